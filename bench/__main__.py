"""Run every benchmark module (bench/bench_*.py) in turn; one failing does not stop the others.

`python -m bench` runs them all; `python -m bench exec audit` only bench_exec and bench_audit.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path


def discover(only: list[str]) -> list[str]:
    """Module names of the benchmarks to run, sorted (optionally only the named ones)."""
    here = Path(__file__).resolve().parent
    names = sorted(path.stem for path in here.glob("bench_*.py"))
    if only:
        wanted = {name if name.startswith("bench_") else f"bench_{name}" for name in only}
        unknown = wanted - set(names)
        if unknown:
            raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; have {names}")
        names = [name for name in names if name in wanted]
    return names


def main(argv: list[str]) -> int:
    """Run the benchmarks; exit status 1 if any of them failed."""
    failed: list[str] = []
    for name in discover(argv):
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        try:
            module = importlib.import_module(f"bench.{name}")
            module.main()
        except KeyboardInterrupt:
            print(f"{name}: interrupted", flush=True)
            raise
        except BaseException:  # one broken bench must not hide the others' figures
            failed.append(name)
            print(f"{name} FAILED:", flush=True)
            traceback.print_exc(file=sys.stdout)
        print(f"({name}: {time.monotonic() - started:.1f}s)", flush=True)
    if failed:
        print(f"\nfailed benchmarks: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
