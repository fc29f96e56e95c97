"""TCP sinks (443, 22, 25, 587, 8080, 8443): record the connection, the TLS SNI name
when a ClientHello carries one, and any honeytoken bytes in the first data; then close."""

from __future__ import annotations

import socket
import struct
import threading

from .base import World
from .core import Journal

BANNERS = {
    22: b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
    25: b"220 mx.local ESMTP ready\r\n",
    587: b"220 mx.local ESMTP ready\r\n",
}
TLS_PORTS = {443, 8443}


def parse_sni(data: bytes) -> str | None:
    """The server name of a TLS ClientHello, or None."""
    try:
        if len(data) < 43 or data[0] != 0x16 or data[5] != 0x01:
            return None
        i = 43  # record header 5 + handshake header 4 + version 2 + random 32
        i += 1 + data[i]  # session id
        (n,) = struct.unpack("!H", data[i : i + 2])
        i += 2 + n  # cipher suites
        i += 1 + data[i]  # compression methods
        (ext_len,) = struct.unpack("!H", data[i : i + 2])
        i += 2
        end = min(len(data), i + ext_len)
        while i + 4 <= end:
            etype, elen = struct.unpack("!HH", data[i : i + 4])
            i += 4
            if etype == 0 and elen >= 5:
                (name_len,) = struct.unpack("!H", data[i + 3 : i + 5])
                return data[i + 5 : i + 5 + name_len].decode("ascii", "replace").lower()
            i += elen
    except (IndexError, struct.error):
        return None
    return None


def _preview(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data[:80])


class TcpSink:
    """One listener per port, a short-lived thread per connection."""

    def __init__(
        self, world: World, journal: Journal, ports: list[int], *, host: str = "0.0.0.0"
    ) -> None:
        self.world, self.journal = world, journal
        self.answer_ip = ""  # the address our DNS answers: a connect to it came from a name
        self.listeners: list[tuple[int, socket.socket]] = []
        for port in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen(64)
            self.listeners.append((port, s))

    def start(self) -> None:
        for port, s in self.listeners:
            threading.Thread(
                target=self._accept, args=(port, s), name=f"tcp-{port}", daemon=True
            ).start()

    def _accept(self, port: int, s: socket.socket) -> None:
        while True:
            try:
                conn, _addr = s.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(port, conn), daemon=True).start()

    def _serve(self, port: int, conn: socket.socket) -> None:
        data = b""
        try:
            address = str(conn.getsockname()[0])
        except OSError:
            address = ""
        with conn:
            conn.settimeout(2.0)
            try:
                if port in BANNERS:
                    conn.sendall(BANNERS[port])
                data = conn.recv(8192)
            except OSError:
                pass
        sni = parse_sni(data) if port in TLS_PORTS else None
        with self.world.lock:
            svc = self.world.service_for(sni) if sni else None
            protocol = (
                "https" if sni is not None or (data[:1] == b"\x16" and port in TLS_PORTS) else "tcp"
            )
            if svc is not None and svc.name in self.world.enabled:
                self.journal.emit(
                    {
                        "kind": "stub_request",
                        "service": svc.name,
                        "action": "https_rejected",
                        "method": "CONNECT",
                        "path": "",
                        "host": sni,
                        "status": 0,
                        "args": {"port": port},
                    }
                )
            else:
                literal = address and address != self.answer_ip and not address.startswith("127.")
                host = sni or (address if literal else "?")
                self.world.egress.append({"protocol": protocol, "host": host, "port": port})
                self.journal.emit(
                    {
                        "kind": "egress_attempt",
                        "protocol": protocol,
                        "host": host,
                        "port": port,
                        "address": address,
                        "answered": port in BANNERS,
                        "first_bytes": f"TLS SNI {sni}" if sni else _preview(data),
                        "detail": _preview(data),
                    }
                )
            for tok in self.world.tokens:
                if any(p in data for p in tok.patterns()):
                    self.journal.emit(
                        {
                            "kind": "honeytoken_access",
                            "token_id": tok.id,
                            "how": "leaked",
                            "where": f"tcp:{port}",
                        }
                    )
