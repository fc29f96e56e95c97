"""The reaper of a lost attempt tells its containers from a retry's on the same engine, also
within the second the node died (container lists give whole seconds)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sandbox.cluster.reaper import _created, _created_after


class _Api:
    def __init__(self, created: dict[str, str]) -> None:
        self.created = created

    def inspect_container(self, cid: str) -> dict[str, Any]:
        return {"Created": self.created[cid]}


class _Client:
    def __init__(self, created: dict[str, str]) -> None:
        self.api = _Api(created)


def test_creation_times_keep_their_fraction() -> None:
    base = datetime(2026, 12, 3, 18, 57, 30, tzinfo=UTC).timestamp()
    assert _created("2026-12-03T18:57:30.250000000Z") == base + 0.25
    assert _created("2026-12-03T18:57:30Z") == base
    assert _created(1796324250) == 1796324250.0
    assert _created("not a time") == 0.0


def test_same_second_is_decided_by_the_containers_own_record() -> None:
    died = datetime(2026, 12, 3, 18, 57, 30, tzinfo=UTC).timestamp() + 0.5
    client = _Client(
        {"lost": "2026-12-03T18:57:30.200000000Z", "retry": "2026-12-03T18:57:30.900000000Z"}
    )
    listed = int(died)  # what the container list says for both
    assert not _created_after(client, {"Id": "lost", "Created": listed}, died)
    assert _created_after(client, {"Id": "retry", "Created": listed}, died)
    assert not _created_after(client, {"Id": "old", "Created": listed - 5}, died)
    assert _created_after(client, {"Id": "new", "Created": listed + 2}, died)
