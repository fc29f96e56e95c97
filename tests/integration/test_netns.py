"""The network boundary of `network: stubs` (issue #11), against real containers.

The sandbox joins the stub container's network namespace: loopback only, every address
local, every attempt recorded. These tests show, each with a positive control that would
make it fail if the boundary were not there, that nothing the sandbox sends reaches the
host or a container on another network, that every attempt is an egress event carrying
the address it dialled, and that the sandbox cannot change the namespace's rules.

Traffic goes only to loopback, to containers these tests start, and to the gateway address
of a bridge network the test itself creates.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from typing import Any

import docker
import pytest
from docker.models.containers import Container
from docker.models.networks import Network
from helpers_stubs import (  # noqa: F401  (fixtures)
    StubbedSandbox,
    stubbed_fixture,
    stubs_image_fixture,
)

from sandbox.stubs.world import ANSWER_IP

pytestmark = pytest.mark.docker

Stubbed = Callable[..., StubbedSandbox]
PORT = 8000

# Sends one TCP connect (+ a request), one UDP datagram and one ICMP echo to ip:port, each
# carrying `tag`, and prints what happened: `tcp:connected` / `tcp:<errno>`, ...
PROBE = r"""
import socket, struct, sys
ip, port, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out = []
try:
    s = socket.create_connection((ip, port), timeout=3)
    s.sendall(f"GET /{tag}-tcp HTTP/1.0\r\n\r\n".encode())
    out.append("tcp:connected")
except OSError as e:
    out.append(f"tcp:{e.errno}")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(f"{tag}-udp".encode(), (ip, port))
out.append("udp:sent")
try:
    i = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    i.settimeout(2)
    i.sendto(struct.pack("!BBHHH", 8, 0, 0, 7, 1) + f"{tag}-icmp".encode(), (ip, 0))
    out.append("icmp:sent")
except OSError as e:
    out.append(f"icmp:{e.errno}")
if len(sys.argv) > 4:
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    b.sendto(f"{tag}-bcast".encode(), ("255.255.255.255", port))
    out.append("bcast:sent")
print(" ".join(out))
"""

# A decoy that logs every TCP connection, UDP datagram (broadcasts too) and ICMP echo
# request it receives, with the sender's address and the first bytes.
DECOY = r"""
import socket, sys, threading
port = int(sys.argv[1])
lock = threading.Lock()
def say(*parts):
    with lock:  # one whole line at a time: three threads write
        sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
        sys.stdout.flush()
def tcp():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    while True:
        c, a = s.accept()
        c.settimeout(2)
        try:
            data = c.recv(200)
        except OSError:
            data = b""
        say("TCP", a[0], data)
        c.close()
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        d, a = s.recvfrom(2000)
        say("UDP", a[0], d)
def icmp():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    while True:
        d, a = s.recvfrom(2000)
        ihl = (d[0] & 15) * 4
        if d[ihl] == 8:
            say("ICMP", a[0], d[ihl + 8:])
for f in (tcp, udp, icmp):
    threading.Thread(target=f, daemon=True).start()
say("READY")
threading.Event().wait()
"""


class Decoy:
    """A container of ours on a network of ours that logs what reaches it."""

    def __init__(self, container: Container, network: Network, ip: str) -> None:
        self.container, self.network, self.ip = container, network, ip

    def log(self) -> str:
        raw: bytes = self.container.logs()
        return raw.decode("utf-8", "replace")


@pytest.fixture
def lab(
    docker_client: docker.DockerClient, agent_image: str, test_run_id: str
) -> Iterator[dict[str, Any]]:
    """Creates labelled networks and containers for one test; removes them after."""
    labels = {
        "sandbox.managed": "true",
        "sandbox.run_id": test_run_id,
        "sandbox.trial_id": "netns-lab",
        "sandbox.role": "decoy",
    }
    stack = ExitStack()

    def network(prefix: str) -> Network:
        net = docker_client.networks.create(
            f"sandbox-test-{prefix}-{uuid.uuid4().hex[:8]}", driver="bridge", labels=labels
        )
        stack.callback(_quietly, net.remove)
        net.reload()
        return net

    def decoy(net: Network) -> Decoy:
        container = docker_client.containers.run(
            agent_image,
            ["python3", "-u", "-c", DECOY, str(PORT)],
            detach=True,
            network=net.name,
            labels=labels,
            user="0:0",
            cap_drop=["ALL"],
            cap_add=["NET_RAW"],  # the raw ICMP socket that logs echo requests
        )
        stack.callback(_quietly, lambda: container.remove(force=True))
        deadline = time.monotonic() + 20
        while b"READY" not in container.logs():
            assert time.monotonic() < deadline, container.logs()
            time.sleep(0.05)
        container.reload()
        ip = container.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
        return Decoy(container, net, ip)

    def run_on(net: Network, *command: str) -> str:
        """Run a short-lived container of ours on `net`; its output."""
        container = docker_client.containers.run(
            agent_image, list(command), network=net.name, labels=labels, detach=True
        )
        try:
            container.wait(timeout=30)
            out: bytes = container.logs()
            return out.decode("utf-8", "replace")
        finally:
            container.remove(force=True)

    with stack:
        yield {"network": network, "decoy": decoy, "run_on": run_on}


def _quietly(fn: Callable[[], object]) -> None:
    with suppress(docker.errors.DockerException):
        fn()


def _egress_to(box: StubbedSandbox, address: str, want: int) -> list[Any]:
    deadline = time.monotonic() + 5
    while True:
        box.world.poll()
        found = [e for e in box.sink.of("egress_attempt") if e.address == address]
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_sandbox_has_only_loopback_and_no_route(stubbed: Stubbed) -> None:
    box = stubbed(services=["cloud"])
    code, out, err = box.sh(
        "ls /sys/class/net; echo ---; cat /proc/net/route; echo ---; cat /etc/resolv.conf"
    )
    assert code == 0, err
    names, routes, resolv = out.split("---\n")
    assert names.split() == ["lo"]  # the design's only interface
    _, v6, _ = box.sh("cat /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/net/if_inet6")
    assert v6.split() == ["1"]  # IPv6 off: no IPv6 address at all, not even ::1
    _, trie, _ = box.sh("cat /proc/net/fib_trie")
    assert ANSWER_IP in trie  # lo's address besides 127.0.0.1: the world's (local table)
    route_lines = [line for line in routes.splitlines() if line.strip()]
    assert len(route_lines) == 1 and route_lines[0].startswith("Iface")  # header only
    assert resolv.split() == ["nameserver", "127.0.0.1"]  # the DNS sink, in the namespace
    # Control: the stubs answer inside the namespace (loopback and the address names get).
    code, out, _ = box.sh(
        "curl -s -m 5 -o /dev/null -w '%{http_code}' http://api.nimbus-cloud.com/v1/regions"
    )
    assert out == "200"
    _, out, _ = box.sh("getent hosts pypi.org")
    assert out.split()[0] == ANSWER_IP
    # its own host name is local, as on any machine (no lookup reaches the DNS sink)
    _, out, _ = box.sh("getent ahostsv4 $(hostname)")
    assert out.split()[0] == "127.0.1.1"
    box.world.poll()
    assert {e.host for e in box.sink.of("egress_attempt")} == {"pypi.org"}


def test_host_listener_on_a_test_bridge_is_not_reachable(
    stubbed: Stubbed, lab: dict[str, Any]
) -> None:
    net = lab["network"]("hostlisten")
    gateway = net.attrs["IPAM"]["Config"][0]["Gateway"]
    accepted: list[tuple[str, str]] = []  # (which listener, peer address)
    listeners: list[socket.socket] = []
    ports: dict[str, int] = {}
    for label, bind in (("bridge", gateway), ("any", "0.0.0.0")):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((bind, 0))
        s.listen(16)
        s.settimeout(0.2)
        listeners.append(s)
        ports[label] = s.getsockname()[1]
    stop = threading.Event()

    def serve(label: str, s: socket.socket) -> None:
        while not stop.is_set():
            try:
                conn, peer = s.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append((label, peer[0]))
            conn.close()

    threads = [
        threading.Thread(target=serve, args=(label, s), daemon=True)
        for label, s in zip(("bridge", "any"), listeners, strict=True)
    ]
    for t in threads:
        t.start()
    try:
        # Controls: the host side reaches both listeners at the bridge's address, and so
        # does a container of ours on that bridge (the host accepts what comes in).
        for label in ("bridge", "any"):
            socket.create_connection((gateway, ports[label]), timeout=3).close()
        out = lab["run_on"](net, "python3", "-c", PROBE, gateway, str(ports["any"]), "control")
        assert out.startswith("tcp:connected"), out
        deadline = time.monotonic() + 5
        while len(accepted) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(label for label, _ in accepted) == ["any", "any", "bridge"], accepted
        before = list(accepted)

        box = stubbed(services=["cloud"])
        for label in ("bridge", "any"):
            code, out, err = box.sh(
                f"python3 -c '{PROBE}' {gateway} {ports[label]} from-sandbox", timeout=30
            )
            assert code == 0, err
            assert out.startswith("tcp:111 "), out  # refused inside the namespace
        time.sleep(0.5)
        assert accepted == before  # nothing from the sandbox reached the host
        events = _egress_to(box, gateway, want=6)
        seen = {(e.protocol, e.port) for e in events}
        for label in ("bridge", "any"):
            assert ("tcp", ports[label]) in seen and ("udp", ports[label]) in seen, seen
        assert ("icmp", None) in seen
        assert all(e.host == gateway and e.answered is False for e in events)
    finally:
        stop.set()
        for s in listeners:
            s.close()


def test_decoy_on_another_network_receives_nothing_and_every_attempt_is_logged(
    stubbed: Stubbed, lab: dict[str, Any]
) -> None:
    net = lab["network"]("decoynet")
    decoy: Decoy = lab["decoy"](net)
    # Control: from its own network every kind of probe (and a broadcast) reaches the decoy.
    out = lab["run_on"](net, "python3", "-c", PROBE, decoy.ip, str(PORT), "from-control", "b")
    assert out.split() == ["tcp:connected", "udp:sent", "icmp:sent", "bcast:sent"], out
    deadline = time.monotonic() + 5
    want = ("from-control-tcp", "from-control-udp", "from-control-icmp", "from-control-bcast")
    while not all(w in decoy.log() for w in want):
        assert time.monotonic() < deadline, decoy.log()
        time.sleep(0.05)

    box = stubbed(services=["cloud", "web"])
    code, out, err = box.sh(f"python3 -c '{PROBE}' {decoy.ip} {PORT} from-sandbox bcast")
    assert code == 0, err
    assert out.split() == ["tcp:111", "udp:sent", "icmp:sent", "bcast:sent"], out
    code, out, _ = box.sh(f"curl -s -m 4 -o /dev/null -w '%{{http_code}}' http://{decoy.ip}/p")
    assert out == "404"  # port 80 of any address is the sink's
    time.sleep(0.5)
    assert "from-sandbox" not in decoy.log() and "/p" not in decoy.log()

    events = _egress_to(box, decoy.ip, want=4)
    by_kind = {(e.protocol, e.port): e for e in events}
    assert set(by_kind) >= {("tcp", PORT), ("udp", PORT), ("icmp", None), ("http", 80)}, events
    assert all(e.host == decoy.ip for e in events)
    assert by_kind[("udp", PORT)].first_bytes == "from-sandbox-udp"
    assert by_kind[("icmp", None)].first_bytes == "from-sandbox-icmp"
    assert by_kind[("http", 80)].first_bytes == "GET /p HTTP/1.1"
    assert by_kind[("http", 80)].answered is True
    # A DNS query sent straight to the decoy's address is answered by our sink and recorded
    # with that address, even for a simulated name.
    code, out, err = box.sh(f"python3 -c '{DIG}' {decoy.ip} api.nimbus-cloud.com")
    assert code == 0 and out.strip() == ANSWER_IP, (out, err)
    dns = [e for e in _egress_to(box, decoy.ip, want=5) if e.protocol == "dns"]
    assert [(e.host, e.port, e.first_bytes) for e in dns] == [
        ("api.nimbus-cloud.com", 53, "A api.nimbus-cloud.com")
    ]
    lines = decoy.log().splitlines()
    assert lines[0] == "READY" and all("from-control" in line for line in lines[1:]), lines
    bcast = _egress_to(box, "255.255.255.255", want=1)
    assert [(e.protocol, e.port, e.first_bytes) for e in bcast] == [
        ("udp", PORT, "from-sandbox-bcast")
    ]


# One A query over UDP to argv[1]:53 for argv[2]; prints the first answer's address.
DIG = r"""
import socket, struct, sys
name = sys.argv[2].encode()
q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p for p in name.split(b".")) + b"\0" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(q, (sys.argv[1], 53))
r, _ = s.recvfrom(512)
print(socket.inet_ntoa(r[-4:]))
"""


NETLINK = r"""
import errno, socket, struct
def ask(mtype, flags, body):
    msg = struct.pack("=IHHII", 16 + len(body), mtype, flags, 1, 0) + body
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    s.bind((0, 0))
    s.send(msg)
    reply = s.recv(4096)
    return errno.errorcode.get(-struct.unpack_from("=i", reply, 16)[0], "OK")
lo = struct.pack("=HHI", 8, 4, socket.if_nametoindex("lo"))
local = struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 255, 4, 254, 2, 0) + lo
default = struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 254, 4, 0, 1, 0) + lo
addr = struct.pack("=BBBBI", 2, 24, 0, 0, socket.if_nametoindex("lo"))
addr += struct.pack("=HH4s", 8, 2, socket.inet_aton("10.9.9.9"))
print(ask(25, 5, local), ask(24, 5 | 0x400, default), ask(20, 5 | 0x400, addr))
"""


def test_sandbox_cannot_change_the_namespace(stubbed: Stubbed, lab: dict[str, Any]) -> None:
    box = stubbed(services=["cloud"])
    code, out, err = box.sh(f"python3 -c '{NETLINK}'")
    assert code == 0, err
    # delete the catch-all route, add a default route, add an address: all refused
    assert out.split() == ["EPERM", "EPERM", "EPERM"], out
    code, out, _ = box.sh(
        "python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)'"
    )
    assert code != 0 and "Operation not permitted" in out + _
    # Still in force: a connect to an address of ours is refused in the namespace and logged.
    net = lab["network"]("afterwards")
    decoy: Decoy = lab["decoy"](net)
    _, out, _ = box.sh(f"python3 -c '{PROBE}' {decoy.ip} {PORT} after")
    assert out.startswith("tcp:111"), out
    assert [e.protocol for e in _egress_to(box, decoy.ip, want=1)][:1] == ["tcp"]
    assert "after" not in decoy.log()
    # The stub process that set the namespace up holds no capability any more.
    assert box.world.container_id is not None
    stubs = box.world.client.containers.get(box.world.container_id)
    status = stubs.exec_run(["cat", "/proc/1/status"]).output.decode()
    caps = dict(re.findall(r"^(Cap\w+):\s*(\w+)$", status, flags=re.M))
    assert int(caps["CapEff"], 16) == 0 and int(caps["CapPrm"], 16) == 0, caps
    uid_line = re.search(r"^Uid:\s*(\d+)", status, flags=re.M)
    assert uid_line is not None and uid_line.group(1) != "0"


def test_pooled_world_has_the_same_boundary(
    docker_backend: Any,
    agent_image: str,
    stubs_image: str,
    test_run_id: str,
    lab: dict[str, Any],
) -> None:
    from helpers_stubs import ListSink

    from sandbox.backends.base import SandboxSpec
    from sandbox.stubs.pool import StubPool
    from sandbox.stubs.world import start_stub_world

    decoy: Decoy = lab["decoy"](lab["network"]("pooled"))
    sink = ListSink()
    with StubPool(
        run_id=test_run_id, size=1, client=docker_backend.client, image=stubs_image
    ) as pool:
        assert pool.wait_full(60)
        with (
            start_stub_world(
                run_id=test_run_id,
                trial_id="pooled-netns",
                services=["cloud"],
                honeytokens=[],
                sink=sink,
                image=stubs_image,
                pool=pool,
            ) as world,
            docker_backend.start(
                SandboxSpec(image=agent_image, network="stubs"),
                run_id=test_run_id,
                trial_id="pooled-netns",
                network=world.network,
            ) as session,
        ):
            assert world.pooled
            box = StubbedSandbox(world=world, session=session, sink=sink)
            _, out, _ = box.sh("ls /sys/class/net; wc -l < /proc/net/route")
            assert out.split() == ["lo", "1"]
            _, out, _ = box.sh(f"python3 -c '{PROBE}' {decoy.ip} {PORT} pooled")
            assert out.split() == ["tcp:111", "udp:sent", "icmp:sent"], out
            kinds = {e.protocol for e in _egress_to(box, decoy.ip, want=3)}
            assert kinds == {"tcp", "udp", "icmp"}
            deadline = time.monotonic() + 5  # the stubs rewrite their state every 0.25 s
            while world.final_state()["network"]["recorder"]["events"] < 3:
                assert time.monotonic() < deadline, world.final_state()["network"]
                time.sleep(0.05)
            assert world.final_state()["network"]["recorder"]["on"] is True
            _, out, _ = box.sh(
                "curl -s -m 5 -o /dev/null -w '%{http_code}' http://api.nimbus-cloud.com/v1/regions"
            )
            assert out == "200"
    time.sleep(0.3)
    assert "pooled" not in decoy.log()
