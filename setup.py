"""Build hook (everything else is in pyproject.toml): a wheel carries the data a checkout
keeps beside the package, and a prebuilt executor.

- scenarios/, containers/ and corpus/ are copied into sandbox/_bundle/ (sandbox.datafiles
  finds them there when the package is installed rather than run from a checkout);
- the executor (sandbox/sessions/executor/executor.c) is compiled statically, when the
  build machine has musl-gcc or a static-capable gcc, into
  sandbox/sessions/executor/prebuilt/<sha256 of the source>-<machine>/sandbox-executor, so
  a host without a C compiler can run sandboxes (sandbox.sessions.executor.build uses it
  when no cached build exists). Without a compiler the wheel is built without it, and says
  so.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA = ("scenarios", "containers", "corpus")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        package = Path(self.build_lib) / "sandbox"
        for name in DATA:
            source = ROOT / name
            if source.is_dir():
                target = package / "_bundle" / name
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(source, target, ignore=SKIP)
        self._prebuild_executor(package / "sessions" / "executor")

    @staticmethod
    def _prebuild_executor(directory: Path) -> None:
        sources = ROOT / "sandbox" / "sessions" / "executor"
        text = b"".join((sources / n).read_bytes() for n in ("executor.c", "warmbash.c"))
        digest = hashlib.sha256(text).hexdigest()
        out = directory / "prebuilt" / f"{digest}-{platform.machine()}" / "sandbox-executor"
        out.parent.mkdir(parents=True, exist_ok=True)
        # the same two steps as sandbox.sessions.executor.build.compile_executor
        warm = out.parent / "warmbash.so"
        flags: list[str] = []
        if shutil.which("gcc"):
            shared = ["-shared", "-fPIC", "-nostdlib", "-ffreestanding", "-fno-stack-protector"]
            done = subprocess.run(
                [
                    "gcc",
                    *shared,
                    "-fno-builtin",
                    "-O2",
                    "-fvisibility=hidden",
                    "-o",
                    str(warm),
                    str(sources / "warmbash.c"),
                ],
                capture_output=True,
                check=False,
            )
            if done.returncode == 0:
                flags = [f'-DSANDBOX_WARM_BASH="{warm}"']
        for compiler in (("musl-gcc", "-static", "-O2"), ("gcc", "-static", "-O2")):
            if shutil.which(compiler[0]) is None:
                continue
            done = subprocess.run(
                [*compiler, *flags, "-o", str(out), str(sources / "executor.c")],
                capture_output=True,
                check=False,
            )
            if done.returncode == 0:
                warm.unlink(missing_ok=True)
                out.chmod(0o755)
                return
        shutil.rmtree(out.parent, ignore_errors=True)
        print("warning: no static C compiler: the wheel has no prebuilt executor", file=sys.stderr)


setup(cmdclass={"build_py": BuildWithData})
