"""The DNS sink (UDP and TCP port 53): every A query is answered with the stubs
container's own address, AAAA and other types get an empty answer, and every
name outside the simulated world is journaled as an egress attempt."""

from __future__ import annotations

import socket
import socketserver
import struct
import threading

from .base import World
from .core import Journal

QTYPES = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    65: "HTTPS",
    255: "ANY",
}
MAX_LOGGED = 2000
IP_PKTINFO = 8  # Linux; Python's socket module does not name it


def parse_query(data: bytes) -> tuple[int, int, str, int, int] | None:
    """(id, flags, name, qtype, end offset of the question) or None when malformed."""
    if len(data) < 17:
        return None
    qid, flags, qd = struct.unpack("!HHH", data[:6])
    if qd != 1 or flags & 0x8000:
        return None
    labels: list[str] = []
    i = 12
    while True:
        if i >= len(data):
            return None
        n = data[i]
        if n == 0:
            i += 1
            break
        if n & 0xC0 or i + 1 + n > len(data) or len(labels) > 127:
            return None
        labels.append(data[i + 1 : i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    if i + 4 > len(data):
        return None
    qtype, _qclass = struct.unpack("!HH", data[i : i + 4])
    return qid, flags, ".".join(labels).lower(), qtype, i + 4


def answer(data: bytes, ip: str) -> tuple[bytes, str, int] | None:
    """The response to a query, the name and the qtype."""
    q = parse_query(data)
    if q is None:
        return None
    qid, flags, name, qtype, end = q
    question = data[12:end]
    ans = b""
    if qtype in (1, 255):
        ans = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(ip)
    rflags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080  # QR, opcode+RD kept, AA, RA
    header = struct.pack("!HHHHHH", qid, rflags, 1, 1 if ans else 0, 0, 0)
    return header + question + ans, name, qtype


class DnsSink:
    """Serves UDP and TCP DNS on `port` in daemon threads."""

    def __init__(
        self, world: World, journal: Journal, ip: str, *, host: str = "0.0.0.0", port: int = 53
    ) -> None:
        self.world, self.journal, self.ip = world, journal, ip
        self.seen: set[str] = set()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((host, port))
        # learn the address each query was sent to (in the world's namespace all are ours)
        self.udp.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self.port = port
        sink = self

        class TCPHandler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(5)
                try:
                    head = self.request.recv(2)
                    if len(head) < 2:
                        return
                    (n,) = struct.unpack("!H", head)
                    data = b""
                    while len(data) < n:
                        chunk = self.request.recv(n - len(data))
                        if not chunk:
                            return
                        data += chunk
                    out = sink.handle(data, "tcp", str(self.request.getsockname()[0]))
                    if out is not None:
                        self.request.sendall(struct.pack("!H", len(out)) + out)
                except OSError:
                    return

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.tcp = socketserver.ThreadingTCPServer((host, port), TCPHandler)
        self.tcp.daemon_threads = True

    def start(self) -> None:
        threading.Thread(target=self._udp_loop, name="dns-udp", daemon=True).start()
        threading.Thread(target=self.tcp.serve_forever, name="dns-tcp", daemon=True).start()

    def _udp_loop(self) -> None:
        while True:
            try:
                data, ancdata, _flags, addr = self.udp.recvmsg(4096, socket.CMSG_SPACE(12))
            except OSError:
                return
            dialled = ""
            for level, ctype, cdata in ancdata:
                if level == socket.IPPROTO_IP and ctype == IP_PKTINFO and len(cdata) >= 12:
                    dialled = socket.inet_ntoa(cdata[8:12])  # ipi_addr: the header's destination
            out = self.handle(data, "udp", dialled)
            if out is not None:
                try:
                    self.udp.sendto(out, addr)
                except OSError:
                    continue

    def handle(self, data: bytes, transport: str, address: str = "") -> bytes | None:
        """Answer one query; record it as egress when the name is not simulated or the
        query went to a resolver address other than ours (`dig @8.8.8.8 ...`)."""
        res = answer(data, self.ip)
        if res is None:
            return None
        out, name, qtype = res
        tname = QTYPES.get(qtype, str(qtype))
        with self.world.lock:
            known = self.world.known_name(name)
            if len(self.world.dns_log) < MAX_LOGGED:
                self.world.dns_log.append({"name": name[:253], "type": tname, "known": known})
            foreign = bool(address) and address != self.ip and not address.startswith("127.")
            key = f"{name}/{tname}" + (f"@{address}" if foreign else "")
            if (not known or foreign) and key not in self.seen:
                self.seen.add(key)
                self.world.egress.append({"protocol": "dns", "host": name[:253], "type": tname})
                self.journal.emit(
                    {
                        "kind": "egress_attempt",
                        "protocol": "dns",
                        "host": name[:253] or ".",
                        "port": 53,
                        "address": address,
                        "answered": True,
                        "first_bytes": f"{tname} {name[:200]}",
                        "detail": f"{tname} query over {transport}"
                        + (f" to the resolver address {address}" if foreign else ""),
                    }
                )
            flat = name.replace(".", "")
            if name in self.seen:
                return out
            self.seen.add(name)
            for tok in self.world.tokens:
                value = tok.value.lower().encode()
                if len(value) >= 8 and (value.decode() in flat or value.hex() in flat):
                    self.world.honeytoken_hits.append(
                        {"token_id": tok.id, "how": "leaked", "where": "dns"}
                    )
                    self.journal.emit(
                        {
                            "kind": "honeytoken_access",
                            "token_id": tok.id,
                            "how": "leaked",
                            "where": f"dns:{name[:200]}",
                        }
                    )
        return out
