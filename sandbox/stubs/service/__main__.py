"""Entry point: `python3 -m stubsvc --world DIR` (DIR holds config.json; events.jsonl,
state.json and ready.json are written there)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from .base import World
from .cloud import Cloud
from .core import Journal
from .dnssink import DnsSink
from .hostcall import HostCalls
from .httpd import StubHTTPServer
from .mail import Mail
from .market import Market
from .modelapi import ModelApi
from .netns import Sniffer, add_address, add_anyip_route, drop_privileges, open_capture
from .payments import Payments
from .tcpsink import TcpSink
from .wallet import Wallet
from .web import Paste, Web
from .weights import Storage, Weights

SERVICES = (Payments, Cloud, Storage, Wallet, Mail, Market, Web, Paste, Weights, ModelApi)
DEFAULT_TCP_PORTS = [443, 22, 25, 587, 8080, 8443]


def own_ip() -> str:
    """This container's address on its network (from /etc/hosts, as Docker writes it)."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def wait_for_config(path: str) -> dict[str, Any]:
    """A pooled container starts before its trial is known: wait for the host to write
    the config (written whole, then renamed into place)."""
    delay = 0.001
    while not os.path.exists(path):
        time.sleep(delay)
        delay = min(delay * 2, 0.004)
    with open(path, encoding="utf-8") as fh:
        config: dict[str, Any] = json.load(fh)
    return config


def build_world(config: dict[str, object]) -> World:
    """A world with every service; those named in config['services'] answer (all if empty)."""
    world = World(config)
    for cls in SERVICES:
        world.add(cls(world))
    wanted = [str(s) for s in config.get("services") or []]  # type: ignore[attr-defined]
    world.enabled = {s for s in wanted if s in world.services} or set(world.services)
    if "cloud" in world.enabled:
        world.enabled.add("storage")
    return world


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stubsvc")
    parser.add_argument("--world", required=True, help="directory with config.json")
    parser.add_argument(
        "--netns",
        metavar="UID:GID",
        help="own the network namespace: as root, make every address local and open the "
        "packet recorder on lo, then run as UID:GID",
    )
    parser.add_argument("--address", help="with --netns: the world's address, given to lo")
    args = parser.parse_args(argv)
    capture: socket.socket | None = None
    if args.netns:
        uid, _, gid = args.netns.partition(":")
        if args.address:
            add_address(args.address)
        add_anyip_route()
        capture = open_capture()
        drop_privileges(int(uid), int(gid or uid))
    config_path = os.path.join(args.world, "config.json")
    if not os.path.exists(config_path):  # pooled: say we are up, then wait for the trial
        with open(os.path.join(args.world, "waiting"), "w", encoding="utf-8") as fh:
            fh.write(str(os.getpid()))
    config = wait_for_config(config_path)
    world = build_world(config)
    world.world_dir = args.world  # where the model API's socket to the harness is
    world.hostcalls = HostCalls(args.world)
    journal = Journal(args.world)
    world.emit = journal.emit
    ports = config.get("ports") or {}
    bind = str(config.get("bind", "0.0.0.0"))
    ip = str(config.get("answer_ip") or own_ip())
    httpd = StubHTTPServer((bind, int(ports.get("http", 80))), world, journal)
    dns = DnsSink(world, journal, ip, host=bind, port=int(ports.get("dns", 53)))
    tcp_ports = [int(p) for p in ports.get("tcp", DEFAULT_TCP_PORTS)]
    tcp = TcpSink(world, journal, tcp_ports, host=bind)
    tcp.answer_ip = ip
    threading.Thread(target=httpd.serve_forever, name="http", daemon=True).start()
    dns.start()
    tcp.start()
    if capture is not None:
        served_tcp = [httpd.server_address[1], dns.port, *tcp_ports]
        Sniffer(capture, world, journal, tcp_ports=served_tcp, udp_ports=[dns.port]).start()
    journal.write_state(world.state())
    journal.mark_ready(
        {
            "ip": ip,
            "pid": os.getpid(),
            "enabled": sorted(world.enabled),
            "http_port": httpd.server_address[1],
        }
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    seen = -1
    while not stop.wait(0.25):
        marker = len(world.dns_log) + len(world.egress) + len(world.honeytoken_hits)
        marker += int(world.recorder["dropped"])
        if marker != seen:
            with world.lock:
                journal.write_state(world.state())
            seen = marker
    with world.lock:
        journal.write_state(world.state())
    return 0


if __name__ == "__main__":
    sys.exit(main())
