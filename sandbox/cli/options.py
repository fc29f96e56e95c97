"""Options and key loading shared by the commands (no command imports another command).

Signing (`run`, `gate --run`): `--sign-key FILE` (alias `--hmac-key`), an Ed25519
private key PEM or an HMAC key file, detected by content; else the environment:
SANDBOX_AUDIT_ED25519_KEY_FILE, SANDBOX_AUDIT_HMAC_KEY_FILE, SANDBOX_AUDIT_HMAC_KEY.
No key at all: the run works and says once, on stderr, that its logs are UNSIGNED.

Checking (`verify`, `report`, `gate`, `view`, `replay`): `--hmac-key FILE` and
`--public-key FILE`, each falling back to SANDBOX_AUDIT_HMAC_KEY_FILE and
SANDBOX_AUDIT_ED25519_PUBLIC_KEY_FILE. Every bad key exits 2 with a one-line error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from sandbox.audit.signing import (
    ED25519_PUBLIC_KEY_FILE_ENV,
    HMAC_KEY_FILE_ENV,
    Signer,
    load_ed25519_public,
    signer_from_env,
    signer_from_file,
)
from sandbox.backends.base import Backend
from sandbox.backends.registry import make_backend
from sandbox.errors import SigningKeyError
from sandbox.report.trials import VerifyKeys

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
    "warning: no signing key (--sign-key or SANDBOX_AUDIT_ED25519_KEY_FILE / "
    "SANDBOX_AUDIT_HMAC_KEY_FILE): these logs are UNSIGNED; their hash chain can be "
    "recomputed by anyone who edits them (sandbox keygen makes a key)"
)


def _one_line(exc: Exception) -> str:
    """The first line of an error (library messages can span several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def fail(console: Console, message: str) -> typer.Exit:
    """Print `error: message` and return the exit (code 2) to raise."""
    console.print(Text(f"error: {message}", style="red"), soft_wrap=True)
    return typer.Exit(2)


def load_signer(sign_key: Path | None, env: Mapping[str, str] | None = None) -> Signer | None:
    """The signer of a run: the `--sign-key` file, else the environment, else None.

    Raises SigningKeyError with a one-line message when a key is unusable."""
    try:
        if sign_key is not None:
            return signer_from_file(sign_key)
        return signer_from_env(dict(os.environ if env is None else env))
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
    env = os.environ if env is None else env
    hmac_path = _env_path(hmac_key, HMAC_KEY_FILE_ENV, env)
    pub_path = _env_path(public_key, ED25519_PUBLIC_KEY_FILE_ENV, env)
    if pub_path is not None and not pub_path.is_file():
        raise SigningKeyError(f"{pub_path}: no such public key file")
    try:
        if pub_path is not None:
            load_ed25519_public(pub_path)  # a bad key fails here, not once per log
        return VerifyKeys.from_files(hmac_path, pub_path)
    except SigningKeyError as exc:
        raise SigningKeyError(_one_line(exc)) from exc


def keys_or_exit(console: Console, hmac_key: Path | None, public_key: Path | None) -> VerifyKeys:
    """`load_keys` for a command: a bad key prints one line and exits 2."""
    try:
        return load_keys(hmac_key, public_key)
    except SigningKeyError as exc:
        raise fail(console, str(exc)) from exc


def backend_option(name: str) -> Backend:
    """The backend named by a `--backend` option (an unknown name is a usage error)."""
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
    "load_keys",
    "load_signer",
    "signer_or_exit",
]
