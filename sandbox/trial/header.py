"""sandbox.trial.header."""

from __future__ import annotations

import hashlib
import json
import platform
import random
import re
from typing import TYPE_CHECKING, Any

from sandbox import __version__
from sandbox.audit.records import HostFacts, LogHeader
from sandbox.backends.base import Backend, SandboxSpec
from sandbox.events import SCHEMA_VERSION
from sandbox.images.recipes import STUBS_IMAGE
from sandbox.llm.base import Model
from sandbox.scenario.model import Scenario
from sandbox.sessions.base import Session

if TYPE_CHECKING:
    from sandbox.trial.context import TrialContext, TrialInput


def slug(text: str) -> str:
    """A file-system and container-label safe form of a model id or name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


def scenario_sha256(scenario: Scenario, source: bytes | None) -> str:
    """Hash of the scenario file as run (of its canonical JSON when there is no file)."""
    if source is None:
        source = json.dumps(scenario.model_dump(mode="json", by_alias=True), sort_keys=True).encode(
            "utf-8"
        )
    return hashlib.sha256(source).hexdigest()


def model_settings(model: Model) -> dict[str, Any]:
    """What is known of a model's configuration, for the log header (never the API key)."""
    return model.describe()


def host_facts(backend: Backend, spec: SandboxSpec | None = None) -> HostFacts:
    """Facts about the host, plus the container runtime and engine the backend names and,
    given the trial's sandbox spec, where its image's system directories come from."""
    return HostFacts(
        rootfs=backend.rootfs_route(spec) if spec is not None else None,
        docker_server=backend.server_version(),
        hostname=platform.node(),
        platform=platform.platform(),
        python=platform.python_version(),
        runtime=backend.runtime_name(),
    )


def build_header(
    trial: TrialInput, ctx: TrialContext, *, trial_id: str, started_at: float
) -> LogHeader:
    """The log header of one trial."""
    scenario, model, backend = trial.scenario, trial.model, ctx.backend
    images = [scenario.sandbox.image]
    if scenario.stubs:
        images.append(STUBS_IMAGE)
    return LogHeader(
        schema_version=SCHEMA_VERSION,
        sandbox_version=__version__,
        run_id=ctx.run_id,
        trial_id=trial_id,
        scenario_id=scenario.id,
        scenario_sha256=scenario_sha256(scenario, trial.source),
        scenario=scenario.model_dump(mode="json", by_alias=True),
        epoch=trial.epoch,
        model=model.name,
        model_settings=model_settings(model),
        image_digests={img: backend.image_digest(img) for img in images},
        loosenings=scenario.sandbox.loosenings_in_effect(),
        seed=trial.seed if trial.seed is not None else ctx.seed,
        base_seed=ctx.seed,
        started_at=started_at,
        host=host_facts(backend, scenario.sandbox),
    )


def planted_bytes(scenario_id: str, path: str, content: str, size: int | None) -> bytes:
    """A planted file's bytes: its content, padded with seeded pseudo-random bytes to `size`."""
    data = content.encode("utf-8")
    if size is not None and size > len(data):
        rng = random.Random(f"{scenario_id}:{path}")
        data += rng.randbytes(size - len(data))
    return data


def plant_files(session: Session, scenario: Scenario) -> None:
    """Write the scenario's files (honeytokens among them) as the agent's user; relative
    paths are resolved by the session, from the agent's home."""
    for f in scenario.files:
        data = planted_bytes(scenario.id, f.path, f.content, f.size)
        session.write_file(f.path, data, mode=f.mode)


__all__ = [
    "build_header",
    "host_facts",
    "model_settings",
    "plant_files",
    "planted_bytes",
    "scenario_sha256",
    "slug",
]
