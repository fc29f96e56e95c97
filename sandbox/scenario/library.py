"""The scenario library: the packaged `scenarios/` directory and lookups by id."""

from __future__ import annotations

import os
from pathlib import Path

from sandbox.datafiles import data_dir
from sandbox.errors import ScenarioError
from sandbox.scenario.loader import load_scenario
from sandbox.scenario.model import Scenario


def scenario_dir() -> Path:
    """The scenario library: $SANDBOX_SCENARIOS, else a checkout's scenarios/ (beside the
    package), else the copy an installed wheel carries (see sandbox.datafiles)."""
    env = os.environ.get("SANDBOX_SCENARIOS")
    if env:
        return Path(env)
    return data_dir("scenarios")


def library_files(directory: str | Path | None = None) -> list[Path]:
    """The scenario files of a library directory, sorted by name."""
    d = Path(directory) if directory is not None else scenario_dir()
    return sorted([*d.glob("*.yaml"), *d.glob("*.yml")])


def load_library(directory: str | Path | None = None) -> list[Scenario]:
    """Every scenario of a library directory (the first bad file raises ScenarioError)."""
    return [load_scenario(p) for p in library_files(directory)]


def find_scenario(ref: str) -> Path:
    """A scenario file path, or the id of a scenario in the library directory."""
    p = Path(ref)
    if p.is_file():
        return p
    for candidate in (scenario_dir() / f"{ref}.yaml", scenario_dir() / f"{ref}.yml"):
        if candidate.is_file():
            return candidate
    raise ScenarioError("no such scenario file, nor a scenario id in the library", file=ref)


__all__ = [
    "find_scenario",
    "library_files",
    "load_library",
    "scenario_dir",
]
