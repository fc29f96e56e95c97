"""Options and key loading shared by the commands (no command imports another command).

Signing (`run`, `gate --run`): `--sign-key FILE` (alias `--hmac-key`), an Ed25519
private key PEM or an HMAC key file, detected by content; else the environment:
SANDBOX_AUDIT_ED25519_KEY_FILE, SANDBOX_AUDIT_HMAC_KEY_FILE, SANDBOX_AUDIT_HMAC_KEY.
No key at all: the run works and says once, on stderr, that its logs are UNSIGNED.

Checking (`verify`, `report`, `gate`, `view`, `replay`): `--hmac-key FILE` and
`--public-key FILE`, each falling back to SANDBOX_AUDIT_HMAC_KEY_FILE (or the key text in
SANDBOX_AUDIT_HMAC_KEY) and SANDBOX_AUDIT_ED25519_PUBLIC_KEY_FILE. Every bad key exits 2
with a one-line error.

A project config file, `sandbox.toml` in the working directory (or the file named by
$SANDBOX_CONFIG), gives the same keys when neither an option nor the environment does;
its paths are relative to the file:

    [audit]
    sign_key = "keys/audit"          # Ed25519 private key PEM, or an HMAC key file
    public_key = "keys/audit.pub"    # to check Ed25519 signatures
    hmac_key = "keys/audit.hmac"     # to check HMAC signatures
    ledger = "ledger.jsonl"          # `run` appends each run's root here
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from sandbox.audit.signing import (
    ED25519_PUBLIC_KEY_FILE_ENV,
    HMAC_KEY_ENV,
    HMAC_KEY_FILE_ENV,
    Signer,
    VerifyKeys,
    load_ed25519_public,
    signer_from_env,
    signer_from_file,
)
from sandbox.errors import SigningKeyError

if TYPE_CHECKING:  # each command imports what it uses: these load when first called
    from sandbox.backends.base import Backend

HmacKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--hmac-key",
        "--hmac-key-file",
        help=f"HMAC key file to check log signatures with (default: ${HMAC_KEY_FILE_ENV}).",
    ),
]
PublicKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--public-key",
        help="Ed25519 public key (PEM) to check log signatures with "
        f"(default: ${ED25519_PUBLIC_KEY_FILE_ENV}).",
    ),
]
SignKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--sign-key",
        "--hmac-key",
        help="Sign log footers with this key: an Ed25519 private key (PEM) or an HMAC key "
        "file (default: $SANDBOX_AUDIT_ED25519_KEY_FILE, then $SANDBOX_AUDIT_HMAC_KEY_FILE).",
    ),
]

UNSIGNED_WARNING = (
    "warning: no signing key (--sign-key, SANDBOX_AUDIT_ED25519_KEY_FILE / "
    "SANDBOX_AUDIT_HMAC_KEY_FILE, or sign_key in sandbox.toml): these logs are UNSIGNED; "
    "their hash chain can be recomputed by anyone who edits them (sandbox keygen makes a key)"
)


def _one_line(exc: Exception) -> str:
    """The first line of an error (library messages can span several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def fail(console: Console, message: str) -> typer.Exit:
    """Print `error: message` and return the exit (code 2) to raise."""
    console.print(Text(f"error: {message}", style="red"), soft_wrap=True)
    return typer.Exit(2)


CONFIG_ENV = "SANDBOX_CONFIG"
CONFIG_NAME = "sandbox.toml"


def project_config(env: Mapping[str, str] | None = None) -> dict[str, Path]:
    """The `[audit]` paths of the project config file (empty when there is none).

    Raises SigningKeyError (one line) when the file is there but not valid TOML or names an
    unknown setting: a key setting silently ignored would leave logs unsigned."""
    env = os.environ if env is None else env
    path = Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else Path(CONFIG_NAME)
    if not path.is_file():
        if env.get(CONFIG_ENV):
            raise SigningKeyError(f"{path}: no such config file (${CONFIG_ENV})")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SigningKeyError(f"{path}: not a valid config file ({_one_line(exc)})") from exc
    audit = data.get("audit", {})
    known = {"sign_key", "public_key", "hmac_key", "ledger"}
    if not isinstance(audit, dict) or set(audit) - known:
        extra = sorted(set(audit) - known) if isinstance(audit, dict) else ["audit"]
        raise SigningKeyError(
            f"{path}: unknown [audit] setting(s) {extra} (known: {sorted(known)})"
        )
    return {k: (path.parent / str(v)) for k, v in audit.items()}


def _with_config(env: Mapping[str, str]) -> dict[str, str]:
    """The environment, with the config file's keys where the environment has none."""
    cfg = project_config(env)
    names = {
        "sign_key": None,
        "public_key": ED25519_PUBLIC_KEY_FILE_ENV,
        "hmac_key": HMAC_KEY_FILE_ENV,
    }
    out = dict(env)
    for key, var in names.items():
        if key in cfg and var is not None and not out.get(var):
            out[var] = str(cfg[key])
    return out


def load_signer(sign_key: Path | None, env: Mapping[str, str] | None = None) -> Signer | None:
    """The signer of a run: the `--sign-key` file, else the environment, else the config
    file's `sign_key`, else None.

    Raises SigningKeyError with a one-line message when a key is unusable."""
    env = os.environ if env is None else env
    try:
        if sign_key is not None:
            return signer_from_file(sign_key)
        signer = signer_from_env(dict(env))
        if signer is None and "sign_key" in (cfg := project_config(env)):
            return signer_from_file(cfg["sign_key"])
        return signer
    except SigningKeyError as exc:
        raise SigningKeyError(_one_line(exc)) from exc


def signer_or_exit(console: Console, sign_key: Path | None) -> Signer | None:
    """`load_signer` for a command: a bad key exits 2; no key warns once that logs are
    unsigned."""
    try:
        signer = load_signer(sign_key)
    except SigningKeyError as exc:
        raise fail(console, str(exc)) from exc
    if signer is None:
        console.print(Text(UNSIGNED_WARNING, style="bold yellow"), soft_wrap=True)
    return signer


def _env_path(explicit: Path | None, var: str, env: Mapping[str, str]) -> Path | None:
    if explicit is not None:
        return explicit
    value = env.get(var)
    return Path(value) if value else None


def load_keys(
    hmac_key: Path | None, public_key: Path | None, env: Mapping[str, str] | None = None
) -> VerifyKeys:
    """The keys to check signatures with: the options, else the environment variables.

    Raises SigningKeyError (one line) when a key file is missing or unusable."""
    try:
        env = _with_config(os.environ if env is None else env)
        hmac_path = _env_path(hmac_key, HMAC_KEY_FILE_ENV, env)
        pub_path = _env_path(public_key, ED25519_PUBLIC_KEY_FILE_ENV, env)
        if pub_path is not None and not pub_path.is_file():
            raise SigningKeyError(f"{pub_path}: no such public key file")
        if pub_path is not None:
            load_ed25519_public(pub_path)  # a bad key fails here, not once per log
        keys = VerifyKeys.from_files(hmac_path, pub_path)
        if keys.hmac_key is None and env.get(HMAC_KEY_ENV):
            keys = VerifyKeys(hmac_key=env[HMAC_KEY_ENV].strip().encode(), public_key=pub_path)
        return keys
    except SigningKeyError as exc:
        raise SigningKeyError(_one_line(exc)) from exc


def keys_or_exit(console: Console, hmac_key: Path | None, public_key: Path | None) -> VerifyKeys:
    """`load_keys` for a command: a bad key prints one line and exits 2."""
    try:
        return load_keys(hmac_key, public_key)
    except SigningKeyError as exc:
        raise fail(console, str(exc)) from exc


def ledger_option(ledger: Path | None) -> Path | None:
    """`--ledger`, else the config file's `ledger`."""
    if ledger is not None:
        return ledger
    try:
        return project_config().get("ledger")
    except SigningKeyError:
        return None  # the key loading says what is wrong with the file


def out_dir_or_exit(console: Console, out: Path) -> Path:
    """The directory runs are written under, created and proven writable before any
    sandbox starts; otherwise one line and exit 2 (never a traceback)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".sandbox-write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise fail(console, f"cannot write runs under {out}: {exc.strerror or exc}") from exc
    return out


def backend_option(name: str) -> Backend:
    """The backend named by a `--backend` option (an unknown name is a usage error)."""
    from sandbox.backends.registry import make_backend

    try:
        return make_backend(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--backend") from exc


__all__ = [
    "UNSIGNED_WARNING",
    "HmacKeyOpt",
    "PublicKeyOpt",
    "SignKeyOpt",
    "backend_option",
    "fail",
    "keys_or_exit",
    "ledger_option",
    "load_keys",
    "load_signer",
    "out_dir_or_exit",
    "project_config",
    "signer_or_exit",
]
