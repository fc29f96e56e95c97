"""Where the project's data directories are: `scenarios/` (the scenario library),
`containers/` (image recipes) and `corpus/` (the monitor's labelled corpus).

In a source checkout (an editable install) they sit beside the package; an installed wheel
carries copies in `sandbox/_bundle/` (setup.py puts them there at build time), so `sandbox
images build`, `sandbox run <id>` and `sandbox monitor-eval` work from any directory.
$SANDBOX_SOURCE_DIR points at another tree holding them.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLE_DIR = PACKAGE_DIR / "_bundle"
NAMES = ("scenarios", "containers", "corpus")


def data_dir(name: str) -> Path:
    """The directory `name` (one of NAMES): $SANDBOX_SOURCE_DIR/name where it exists, else
    beside the package (a checkout), else the wheel's bundled copy. When none exists, the
    checkout's path (so an error names where it was looked for)."""
    if name not in NAMES:
        raise ValueError(f"unknown data directory {name!r}")
    override = os.environ.get("SANDBOX_SOURCE_DIR")
    if override and (Path(override) / name).is_dir():
        return Path(override).resolve() / name
    beside = PACKAGE_DIR.parent / name
    if beside.is_dir():
        return beside
    bundled = BUNDLE_DIR / name
    return bundled if bundled.is_dir() else beside


__all__ = ["BUNDLE_DIR", "NAMES", "PACKAGE_DIR", "data_dir"]
