"""The world's network namespace: loopback only, every address local, every packet seen.

The stubs container is started with Docker's `network_mode: none` (no interface but `lo`,
so no packet can leave it whatever any process does) and the sandbox joins that namespace
(`network_mode: container:<stubs>`). While still root, the stub process:

1. gives `lo` the world's address (what every name resolves to) and adds
   `local 0.0.0.0/0 dev lo` to the local routing table ("AnyIP"): every IPv4 address
   is this namespace's own, so a connect to *any* address lands on our listeners (HTTP 80,
   DNS 53, the TCP sinks), or is refused at once by the kernel when no one listens there;
2. opens a packet socket on `lo` with a small BPF filter (TCP SYNs, UDP, ICMP; nothing to
   127/8), the `Sniffer`, which records every attempt no stub listener sees itself;
3. drops to its unprivileged uid (capabilities are cleared by the kernel on setuid).

The sandbox shares the namespace but never holds CAP_NET_ADMIN or CAP_NET_RAW, so it can
neither change the routes nor open packet sockets (our seccomp profile refuses AF_PACKET).
Standard library only (it runs in the stubs image).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import threading
from collections.abc import Iterable

from .base import World
from .core import Journal

# --- netlink: ip addr add / ip route add ------------------------------------------------------

RTM_NEWADDR = 20
RTM_NEWROUTE = 24
IFA_ADDRESS, IFA_LOCAL = 1, 2
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
RT_TABLE_LOCAL = 255
RTPROT_STATIC = 4
RT_SCOPE_HOST = 254
RTN_LOCAL = 2
RTA_OIF = 4


def _netlink(mtype: int, flags: int, body: bytes, what: str) -> None:
    msg = struct.pack("=IHHII", 16 + len(body), mtype, flags, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as nl:
        nl.bind((0, 0))
        nl.send(msg)
        reply = nl.recv(4096)
    (rtype,) = struct.unpack_from("=H", reply, 4)
    if rtype == NLMSG_ERROR:
        (code,) = struct.unpack_from("=i", reply, 16)
        if code < 0 and -code != errno.EEXIST:
            raise OSError(-code, f"{what}: {os.strerror(-code)}")


def add_address(address: str, ifname: str = "lo") -> None:
    """`ip addr add ADDRESS/32 dev lo`: the world's own address. With only 127.0.0.1,
    lookups with AI_ADDRCONFIG (wget, `getent ahosts`, ...) would return no IPv4 address."""
    index = socket.if_nametoindex(ifname)
    packed = socket.inet_aton(address)
    body = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, index)
    for attr in (IFA_LOCAL, IFA_ADDRESS):
        body += struct.pack("=HH4s", 8, attr, packed)
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    _netlink(RTM_NEWADDR, flags, body, "adding the address")


def add_anyip_route(ifname: str = "lo") -> None:
    """Make every IPv4 address local (`ip route add local 0.0.0.0/0 dev lo table local`)."""
    index = socket.if_nametoindex(ifname)
    rtmsg = struct.pack(
        "=BBBBBBBBI",
        socket.AF_INET,
        0,  # dst_len: 0.0.0.0/0
        0,
        0,
        RT_TABLE_LOCAL,
        RTPROT_STATIC,
        RT_SCOPE_HOST,
        RTN_LOCAL,
        0,
    )
    body = rtmsg + struct.pack("=HHI", 8, RTA_OIF, index)
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    _netlink(RTM_NEWROUTE, flags, body, "adding the local route")


def drop_privileges(uid: int, gid: int) -> None:
    """Become uid:gid for good (the kernel clears every capability on the way)."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


# --- the packet socket -----------------------------------------------------------------------

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SNAPLEN = 320

# Classic BPF over the IPv4 header (a SOCK_DGRAM packet socket sees the network header):
# drop anything to 127/8; keep UDP and ICMP; keep TCP only when SYN is set and ACK is not.
_BPF = (
    (0x30, 0, 0, 16),  # 0  ldb [16]          first byte of the destination
    (0x15, 9, 0, 127),  # 1  jeq #127 -> drop
    (0x30, 0, 0, 9),  # 2  ldb [9]           protocol
    (0x15, 6, 0, 17),  # 3  jeq #17 (udp) -> accept
    (0x15, 5, 0, 1),  # 4  jeq #1 (icmp) -> accept
    (0x15, 0, 5, 6),  # 5  jeq #6 (tcp) ? next : drop
    (0xB1, 0, 0, 0),  # 6  ldxb 4*([0]&0xf)  header length
    (0x50, 0, 0, 13),  # 7  ldb [x+13]        TCP flags
    (0x54, 0, 0, 0x12),  # 8  and #(SYN|ACK)
    (0x15, 0, 1, 0x02),  # 9  jeq #SYN ? accept : drop
    (0x06, 0, 0, SNAPLEN),  # 10 accept
    (0x06, 0, 0, 0),  # 11 drop
)


def _attach_filter(sock: socket.socket) -> None:
    prog = b"".join(struct.pack("=HBBI", *ins) for ins in _BPF)
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("HL", len(_BPF), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def open_capture(ifname: str = "lo") -> socket.socket:
    """A filtered IPv4 packet socket on `ifname` (needs CAP_NET_RAW: open it before dropping)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    _attach_filter(sock)
    sock.bind((ifname, ETH_P_IP))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return sock


def preview(data: bytes, n: int = 80) -> str:
    """Printable first bytes (others as '.')."""
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data[:n])


ICMP_NAMES = {8: "echo request", 13: "timestamp request", 17: "address mask request"}
ICMP_REPLIES = {0, 3, 11, 14, 18}  # echo reply, unreachable, time exceeded: the kernel's answers


def parse_packet(
    pkt: bytes, *, skip_tcp: Iterable[int] = (), skip_udp: Iterable[int] = ()
) -> dict[str, object] | None:
    """An egress record for one IPv4 packet, or None when it is not a new attempt
    (replies, loopback, ports whose stub listener records the attempt itself)."""
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return None
    ihl = (pkt[0] & 0x0F) * 4
    proto = pkt[9]
    dst = socket.inet_ntoa(pkt[16:20])
    if dst.startswith("127."):
        return None
    l4 = pkt[ihl:]
    if proto == 6 and len(l4) >= 14:
        sport, dport = struct.unpack("!HH", l4[:4])
        if l4[13] & 0x12 != 0x02 or dport in set(skip_tcp):
            return None
        return {"protocol": "tcp", "address": dst, "port": dport, "sport": sport, "payload": b""}
    if proto == 17 and len(l4) >= 8:
        sport, dport = struct.unpack("!HH", l4[:4])
        if sport in set(skip_udp) or dport in set(skip_udp):
            return None
        return {"protocol": "udp", "address": dst, "port": dport, "sport": sport, "payload": l4[8:]}
    if proto == 1 and len(l4) >= 8:
        itype = l4[0]
        if itype in ICMP_REPLIES:
            return None
        (ident,) = struct.unpack("!H", l4[4:6])
        return {
            "protocol": "icmp",
            "address": dst,
            "port": None,
            "sport": ident,
            "payload": l4[8:],
            "icmp": ICMP_NAMES.get(itype, f"type {itype}"),
        }
    return None


class Sniffer:
    """Records each attempt that reaches no stub listener: a TCP connect (SYN) to any other
    port, a UDP datagram to any port but the DNS sink's, an ICMP request, a broadcast.
    One event per flow (retransmissions and later datagrams of a flow are not repeated)."""

    MAX_EVENTS = 5000
    MAX_FLOWS = 8192

    def __init__(
        self,
        sock: socket.socket,
        world: World,
        journal: Journal,
        *,
        tcp_ports: Iterable[int],
        udp_ports: Iterable[int],
    ) -> None:
        self.sock, self.world, self.journal = sock, world, journal
        self.tcp_ports = frozenset(tcp_ports)
        self.udp_ports = frozenset(udp_ports)
        self.flows: set[tuple[object, ...]] = set()
        self.count = 0
        self.dropped = 0
        world.recorder["on"] = True

    def start(self) -> None:
        threading.Thread(target=self._loop, name="sniffer", daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                pkt, addr = self.sock.recvfrom(SNAPLEN)
            except OSError:
                return
            if len(addr) > 2 and addr[2] == PACKET_OUTGOING:
                continue  # bound to ETH_P_IP we see lo's receive side; never count twice
            try:
                self.handle(pkt)
            except Exception:  # a malformed packet must not stop the recorder
                continue

    def handle(self, pkt: bytes) -> bool:
        rec = parse_packet(pkt, skip_tcp=self.tcp_ports, skip_udp=self.udp_ports)
        if rec is None:
            return False
        key = (rec["protocol"], rec["address"], rec["port"], rec["sport"])
        if key in self.flows:
            return False
        if len(self.flows) >= self.MAX_FLOWS:
            self.flows.clear()
        self.flows.add(key)
        address = str(rec["address"])
        port = rec["port"]
        payload = rec["payload"]
        assert isinstance(payload, bytes)
        if rec["protocol"] == "tcp":
            detail = "connect; no stub listens on this port (refused)"
        elif rec["protocol"] == "udp":
            detail = f"datagram of {len(payload)} bytes; no stub answers it"
        else:
            detail = f"{rec['icmp']}; answered by the namespace's kernel, went nowhere"
        if address == "255.255.255.255":
            detail += " (broadcast)"
        with self.world.lock:
            if self.count >= self.MAX_EVENTS:
                self.dropped += 1
                self.world.recorder["dropped"] = self.dropped
                return False
            self.count += 1
            self.world.recorder["events"] = self.count
            self.world.egress.append({"protocol": rec["protocol"], "host": address, "port": port})
            self.journal.emit(
                {
                    "kind": "egress_attempt",
                    "protocol": rec["protocol"],
                    "host": address,
                    "port": port,
                    "address": address,
                    "answered": False,
                    "first_bytes": preview(payload),
                    "detail": detail,
                }
            )
        return True
