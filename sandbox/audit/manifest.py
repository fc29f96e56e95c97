"""The run manifest: one signed record of every trial a run planned, sealing the run.

A trial log proves what happened in one trial; it cannot prove that the run had exactly
these trials. At the end of a run the runner writes `manifest.json` next to the logs:

    {"record": "manifest", "run_id": ..., "planned": 40,
     "trials": [{"scenario_id", "model", "epoch", "trial_id", "log", "sha256",
                 "final_hash", "status"}, ...],
     "root": "<sha256 over the trial entries>", "signature": {...} | null}

`root` is SHA-256 over a domain tag and the canonical JSON of the entries; the
signature (the run's signing key, as for the logs) covers everything but itself. The
root is short enough to print, paste into a release ticket, or append to a ledger
(`append_ledger`: a file of lines, each chained to the one before, that only grows).

`check_manifests` is what readers judge a run directory through (or a directory of
runs side by side; a run nested inside another run's directory is a problem): every log
must be listed by exactly one manifest with the same bytes (SHA-256 of the file) and the same
header (trial id, scenario, model, epoch), every listed log must be there, and a trial
id appears once. A missing, duplicated, extra, edited or swapped log is a problem, and so
is a manifest edited after sealing (the root no longer matches) or signed by another key.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox.audit.canonical import canonical_json
from sandbox.audit.reader import discover_logs, read_header
from sandbox.audit.records import Signature
from sandbox.audit.signing import SignatureVerifier, Signer
from sandbox.audit.verdict import SignatureStatus

MANIFEST_NAME = "manifest.json"
_ROOT_DOMAIN = b"sandbox-run-manifest-root-v1\n"
_SIGN_DOMAIN = b"sandbox-run-manifest-v1\n"
_LEDGER_GENESIS = "0" * 64

EntryStatus = Literal["done", "failed", "not_run"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ManifestEntry(_Model):
    """One planned trial: where its log is and what its bytes hash to."""

    scenario_id: str
    model: str
    epoch: int
    trial_id: str | None = None  # None when the trial never opened a log
    log: str | None = None  # path relative to the manifest's directory, "/" separated
    sha256: str | None = None  # of the log file's bytes
    final_hash: str | None = None  # the log's last chain hash, for cross-reference
    status: EntryStatus = "done"
    # attempts lost before this one (a cluster node or worker died mid-trial), one line
    # each; left out of the root while empty, so manifests sealed before it still verify
    lost: list[str] = Field(default_factory=list)


class RunManifest(_Model):
    """Every trial of one run, sealed by `root` and (optionally) a signature."""

    record: Literal["manifest"] = "manifest"
    schema_version: Literal["1"] = "1"
    run_id: str
    sandbox_version: str = ""
    started_at: float
    ended_at: float
    planned: int
    trials: list[ManifestEntry] = Field(default_factory=list)
    root: str
    signature: Signature | None = None


def _entry_body(entry: ManifestEntry) -> dict[str, object]:
    body = entry.model_dump(mode="json")
    if not body.get("lost"):
        body.pop("lost", None)
    return body


def manifest_root(trials: Sequence[ManifestEntry]) -> str:
    """The root digest: SHA-256 over a domain tag and the canonical JSON of the entries."""
    body = canonical_json([_entry_body(t) for t in trials])
    return hashlib.sha256(_ROOT_DOMAIN + body.encode("utf-8", "surrogatepass")).hexdigest()


def _signed_bytes(manifest: RunManifest) -> bytes:
    body = manifest.model_dump(mode="json", exclude={"signature"})
    return _SIGN_DOMAIN + canonical_json(body).encode("utf-8", "surrogatepass")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def seal(
    run_id: str,
    trials: Sequence[ManifestEntry],
    *,
    started_at: float,
    signer: Signer | None,
    sandbox_version: str = "",
    ended_at: float | None = None,
) -> RunManifest:
    """A manifest over these entries, its root computed and (with a signer) signed."""
    unsigned = RunManifest(
        run_id=run_id,
        sandbox_version=sandbox_version,
        started_at=started_at,
        ended_at=time.time() if ended_at is None else ended_at,
        planned=len(trials),
        trials=list(trials),
        root=manifest_root(trials),
    )
    if signer is None:
        return unsigned
    return unsigned.model_copy(update={"signature": signer.sign(_signed_bytes(unsigned))})


def entry_for_log(
    run_dir: Path, log: Path, *, scenario_id: str, model: str, epoch: int
) -> ManifestEntry:
    """The entry of a trial whose log is written and closed."""
    header = read_header(log)
    final_hash = None
    try:
        last = log.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        data = json.loads(last)
        final_hash = data.get("hash") if isinstance(data, dict) else None
    except (OSError, ValueError):
        final_hash = None
    return ManifestEntry(
        scenario_id=scenario_id,
        model=model,
        epoch=epoch,
        trial_id=header.trial_id,
        log=log.relative_to(run_dir).as_posix(),
        sha256=file_sha256(log),
        final_hash=final_hash if isinstance(final_hash, str) else None,
        status="done",
    )


def write_manifest(run_dir: Path, manifest: RunManifest) -> Path:
    """Write `manifest.json` atomically; returns its path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / MANIFEST_NAME
    tmp = run_dir / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(
        json.dumps(manifest.model_dump(mode="json"), indent=1, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    os.replace(tmp, path)
    return path


# --- the ledger: roots recorded outside the run ---------------------------------------------


def _ledger_hash(line: dict[str, object]) -> str:
    body = {k: v for k, v in line.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def read_ledger(path: Path) -> list[dict[str, object]]:
    """The ledger's lines; ValueError naming the line when the chain is broken."""
    out: list[dict[str, object]] = []
    prev = _LEDGER_GENESIS
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"{path}: line {n} is not JSON ({exc})") from exc
        if not isinstance(line, dict) or line.get("prev") != prev:
            raise ValueError(f"{path}: line {n} does not follow the line before (edited?)")
        if line.get("hash") != _ledger_hash(line):
            raise ValueError(f"{path}: line {n} was edited (hash mismatch)")
        prev = str(line["hash"])
        out.append(line)
    return out


def append_ledger(path: Path, manifest: RunManifest) -> dict[str, object]:
    """Append the run's root to an append-only ledger file (created if missing); each line
    carries the hash of the line before, so an edit or deletion shows."""
    lines = read_ledger(path) if path.exists() else []
    line: dict[str, object] = {
        "run_id": manifest.run_id,
        "root": manifest.root,
        "planned": manifest.planned,
        "ended_at": manifest.ended_at,
        "key_id": manifest.signature.key_id if manifest.signature else None,
        "prev": str(lines[-1]["hash"]) if lines else _LEDGER_GENESIS,
    }
    line["hash"] = _ledger_hash(line)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(canonical_json(line) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return line


# --- checking a run directory through its manifests -----------------------------------------


class ManifestCheck(_Model):
    """What the manifests of a run directory say about its logs."""

    manifests: list[str] = Field(default_factory=list)  # paths relative to the root
    roots: dict[str, str] = Field(default_factory=dict)  # manifest path -> root digest
    signatures: dict[str, SignatureStatus] = Field(default_factory=dict)
    key_ids: dict[str, str] = Field(default_factory=dict)
    planned: int = 0
    problems: list[str] = Field(default_factory=list)
    # logs to leave out of the statistics: extra, edited, swapped or duplicated
    rejected: dict[str, str] = Field(default_factory=dict)  # log path -> why

    @property
    def sealed(self) -> bool:
        """At least one manifest, and no problem."""
        return bool(self.manifests) and not self.problems


def _signature_status(
    manifest: RunManifest, verifiers: Sequence[SignatureVerifier]
) -> tuple[SignatureStatus, str | None]:
    sig = manifest.signature
    if sig is None:
        return "unsigned", None
    if not verifiers:
        return "unchecked", sig.key_id
    for v in verifiers:
        if v.algorithm == sig.algorithm and v.key_id == sig.key_id:
            return ("valid" if v.verify(sig, _signed_bytes(manifest)) else "invalid"), sig.key_id
    return "wrong_key", sig.key_id


def _find_manifests(root: Path) -> list[Path]:
    if root.is_file():
        return []
    found = [Path(d) / MANIFEST_NAME for d, _, files in os.walk(root) if MANIFEST_NAME in files]
    return sorted(found)


def check_manifests(
    root: Path, *, verifiers: Sequence[SignatureVerifier] = (), logs: Iterable[Path] | None = None
) -> ManifestCheck:
    """Judge the logs under `root` (a run directory, or a directory of runs) against
    their manifests. `logs` defaults to every `*.jsonl` under `root`."""
    base = root if root.is_dir() else root.parent
    all_logs = sorted(discover_logs(root) if logs is None else logs)
    problems: list[str] = []
    rejected: dict[str, str] = {}
    listed: dict[Path, str] = {}  # log path -> manifest that lists it
    roots: dict[str, str] = {}
    sigs: dict[str, SignatureStatus] = {}
    key_ids: dict[str, str] = {}
    names: list[str] = []
    planned = 0
    found = _find_manifests(root)
    dirs = [m.parent.resolve() for m in found]
    for mpath in found:
        name = mpath.relative_to(base).as_posix()
        here = mpath.parent.resolve()
        outer = [d for d in dirs if d != here and here.is_relative_to(d)]
        if outer:
            # a run inside another run's directory was copied in: its logs are not the
            # outer run's, whoever signed them (they stay unlisted, so they are rejected)
            problems.append(
                f"{name}: a run nested inside the run at "
                f"{outer[0].relative_to(base.resolve()).as_posix() or '.'} (copied in?)"
            )
            continue
        names.append(name)
        try:
            manifest = RunManifest.model_validate_json(mpath.read_bytes())
        except (OSError, ValidationError, ValueError) as exc:
            problems.append(f"{name}: not a readable run manifest ({str(exc).splitlines()[0]})")
            continue
        planned += manifest.planned
        roots[name] = manifest.root
        if manifest_root(manifest.trials) != manifest.root:
            problems.append(
                f"{name}: its entries no longer hash to its root (edited after sealing)"
            )
        if manifest.planned != len(manifest.trials):
            problems.append(
                f"{name}: says {manifest.planned} planned trial(s), lists {len(manifest.trials)}"
            )
        status, key_id = _signature_status(manifest, verifiers)
        sigs[name] = status
        if key_id:
            key_ids[name] = key_id
        if status in ("invalid", "wrong_key"):
            what = "a bad signature" if status == "invalid" else f"a signature by {key_id}"
            problems.append(f"{name}: {what}, not one by the given key")
        ids = Counter(t.trial_id for t in manifest.trials if t.trial_id)
        for tid, n in sorted(ids.items()):
            if n > 1:
                problems.append(f"{name}: trial id {tid} is listed {n} times")
        _check_entries(mpath.parent, name, manifest, base, listed, problems, rejected)
    for log in all_logs:
        rel = log.relative_to(base).as_posix() if log.is_relative_to(base) else str(log)
        if log.resolve() not in listed and names:
            problems.append(f"{rel}: a log no manifest lists (added to the run?)")
            rejected[rel] = "not in any manifest"
    return ManifestCheck(
        manifests=names,
        roots=roots,
        signatures=sigs,
        key_ids=key_ids,
        planned=planned,
        problems=problems,
        rejected=rejected,
    )


def _check_entries(
    mdir: Path,
    name: str,
    manifest: RunManifest,
    base: Path,
    listed: dict[Path, str],
    problems: list[str],
    rejected: dict[str, str],
) -> None:
    rbase = base.resolve()
    for entry in manifest.trials:
        if entry.log is None:
            continue  # a planned trial that never opened a log: the manifest says so
        path = (mdir / entry.log).resolve()
        rel = path.relative_to(rbase).as_posix() if path.is_relative_to(rbase) else str(path)
        if path in listed:
            problems.append(f"{rel}: listed by {listed[path]} and by {name}")
            rejected[rel] = "listed twice"
            continue
        listed[path] = name
        what = f"{entry.scenario_id}/{entry.model} epoch {entry.epoch}"
        if not path.is_file():
            problems.append(f"{rel}: missing ({name} lists it for {what})")
            continue
        if entry.sha256 is not None and file_sha256(path) != entry.sha256:
            problems.append(f"{rel}: its bytes differ from what {name} sealed (replaced or edited)")
            rejected[rel] = "differs from the manifest"
            continue
        try:
            header = read_header(path)
        except (OSError, ValueError) as exc:
            problems.append(f"{rel}: unreadable header ({exc})")
            rejected[rel] = "unreadable"
            continue
        got = (header.trial_id, header.scenario_id, header.model, header.epoch)
        want = (entry.trial_id, entry.scenario_id, entry.model, entry.epoch)
        if got != want:
            problems.append(f"{rel}: holds trial {got[0]}, {name} lists {want[0]} here (swapped)")
            rejected[rel] = "swapped"


__all__ = [
    "MANIFEST_NAME",
    "ManifestCheck",
    "ManifestEntry",
    "RunManifest",
    "append_ledger",
    "check_manifests",
    "entry_for_log",
    "file_sha256",
    "manifest_root",
    "read_ledger",
    "seal",
    "write_manifest",
]
