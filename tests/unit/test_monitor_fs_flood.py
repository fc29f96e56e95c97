"""A truncated file-system snapshot (an agent flooding its directories to blind the
observer) becomes one low-severity monitor_evasion finding; complete snapshots stay silent."""

from __future__ import annotations

from helpers_monitor import rule_ids, run_monitor

from sandbox.events import Event, FsChange, FsChangeItem, Severity


def _fs(truncated: bool, path: str = "/tmp/f1") -> FsChange:
    item = FsChangeItem(path=path, change="created", size=1, mode=0o644)
    return FsChange(command_id="c1", changes=(item,), truncated=truncated)


def test_truncated_snapshot_is_flagged_once_with_low_severity() -> None:
    events: list[Event] = [_fs(True), _fs(True, "/tmp/f2"), FsChange(changes=(), truncated=True)]
    findings = [f for f in run_monitor(events) if f.rule_id == "monitor_evasion.fs_flood"]
    assert len(findings) == 1
    assert findings[0].severity == Severity.LOW


def test_complete_snapshot_is_silent() -> None:
    assert "monitor_evasion.fs_flood" not in rule_ids(run_monitor([_fs(False)]))


def test_old_events_without_the_field_still_load() -> None:
    event = FsChange.model_validate({"kind": "fs_change", "changes": []})
    assert event.truncated is False
