"""The stub namespace's packet recorder, fed hand-made IPv4 packets (no Docker, no sockets):
which packets are attempts, what an attempt's event says, and that flows are counted once."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.events import EgressAttempt, parse_event
from sandbox.stubs.service.base import World
from sandbox.stubs.service.core import Journal
from sandbox.stubs.service.netns import Sniffer, parse_packet


def ipv4(proto: int, dst: str, l4: bytes, src: str = "10.0.0.1") -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(l4),
        0,
        0,
        64,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return header + l4


def tcp(dst: str, dport: int, flags: int, sport: int = 40000) -> bytes:
    return ipv4(6, dst, struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, flags, 0, 0, 0))


def udp(dst: str, dport: int, payload: bytes, sport: int = 40001) -> bytes:
    return ipv4(17, dst, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)


def icmp(dst: str, itype: int, payload: bytes = b"hi") -> bytes:
    return ipv4(1, dst, struct.pack("!BBHHH", itype, 0, 0, 7, 1) + payload)


SYN, SYNACK, ACK = 0x02, 0x12, 0x10


def test_which_packets_are_attempts() -> None:
    assert parse_packet(tcp("172.20.0.5", 8000, SYN)) == {
        "protocol": "tcp",
        "address": "172.20.0.5",
        "port": 8000,
        "sport": 40000,
        "payload": b"",
    }
    assert parse_packet(tcp("172.20.0.5", 8000, SYNACK)) is None  # a reply
    assert parse_packet(tcp("172.20.0.5", 8000, ACK)) is None  # the rest of a flow
    assert parse_packet(tcp("127.0.0.1", 8000, SYN)) is None  # loopback is the world itself
    assert parse_packet(tcp("10.1.1.1", 80, SYN), skip_tcp=[80]) is None  # the stub records it
    rec = parse_packet(udp("169.254.169.254", 80, b"meta"))
    assert rec is not None and rec["protocol"] == "udp" and rec["payload"] == b"meta"
    assert parse_packet(udp("10.1.1.1", 53, b"q"), skip_udp=[53]) is None  # the DNS sink's
    assert parse_packet(udp("10.1.1.1", 40001, b"a", sport=53), skip_udp=[53]) is None
    echo = parse_packet(icmp("10.1.1.1", 8))
    assert echo is not None and echo["protocol"] == "icmp" and echo["port"] is None
    assert parse_packet(icmp("10.1.1.1", 0)) is None  # the kernel's echo reply
    assert parse_packet(icmp("10.1.1.1", 3)) is None  # port unreachable
    assert parse_packet(b"\x60" + b"\0" * 39) is None  # not IPv4
    assert parse_packet(b"\x45\0") is None  # truncated


class _NoSocket:
    def recvfrom(self, n: int) -> tuple[bytes, tuple[str, ...]]:
        raise OSError("unused")


@pytest.fixture
def sniffer(tmp_path: Path) -> Iterator[Sniffer]:
    world = World({"trial_id": "t"})
    journal = Journal(str(tmp_path))
    yield Sniffer(
        _NoSocket(),  # type: ignore[arg-type]
        world,
        journal,
        tcp_ports=[80, 443],
        udp_ports=[53],
    )
    journal._events.close()


def _events(tmp_path: Path) -> list[EgressAttempt]:
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    out = []
    for line in lines:
        event = parse_event({**json.loads(line), "agent_id": "main"})
        assert isinstance(event, EgressAttempt)
        out.append(event)
    return out


def test_each_flow_is_one_valid_event(sniffer: Sniffer, tmp_path: Path) -> None:
    assert sniffer.handle(tcp("172.20.0.5", 8000, SYN))
    assert not sniffer.handle(tcp("172.20.0.5", 8000, SYN))  # a retransmission
    assert sniffer.handle(tcp("172.20.0.5", 8000, SYN, sport=40002))  # a second connect
    assert sniffer.handle(udp("255.255.255.255", 9999, b"who is there\x00"))
    assert sniffer.handle(icmp("169.254.169.254", 8, b"ping-payload"))
    assert not sniffer.handle(tcp("172.20.0.5", 443, SYN))  # the TCP sink records those
    events = _events(tmp_path)
    assert [(e.protocol, e.host, e.port) for e in events] == [
        ("tcp", "172.20.0.5", 8000),
        ("tcp", "172.20.0.5", 8000),
        ("udp", "255.255.255.255", 9999),
        ("icmp", "169.254.169.254", None),
    ]
    assert all(e.address == e.host and e.answered is False for e in events)
    assert events[2].first_bytes == "who is there." and "broadcast" in events[2].detail
    assert events[3].first_bytes == "ping-payload"
    assert len(sniffer.world.egress) == 4


def test_event_cap(sniffer: Sniffer, tmp_path: Path) -> None:
    sniffer.MAX_EVENTS = 3
    for port in range(10):
        sniffer.handle(tcp("10.0.0.9", 1000 + port, SYN))
    assert len(_events(tmp_path)) == 3 and sniffer.dropped == 7
    assert sniffer.world.state()["network"]["recorder"] == {"on": True, "events": 3, "dropped": 7}


def test_old_egress_events_still_parse() -> None:
    old = {"kind": "egress_attempt", "protocol": "dns", "host": "a.example", "agent_id": "m"}
    event = parse_event({**old, "ts": 1.0})
    assert isinstance(event, EgressAttempt)
    assert event.address == "" and event.answered is None and event.first_bytes == ""
