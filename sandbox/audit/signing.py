"""Optional signatures on audit logs: HMAC-SHA256 (shared key) or Ed25519 (key pair).

The hash chain alone shows a log was not edited by someone who did not also
recompute every hash; a signature over the footer shows it came from a holder of
the key. What is signed is `signed_message(footer)`: the canonical JSON of the
footer without `signature` and `hash`, which includes the chain's final hash,
the event count and the trial summary.

Keys: an HMAC key is the content of a file (surrounding whitespace stripped, at
least 16 bytes) or of the environment variable SANDBOX_AUDIT_HMAC_KEY; an Ed25519
private key is an unencrypted PKCS#8 PEM file, its public key a
SubjectPublicKeyInfo PEM file. `key_id` is a fingerprint, never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sandbox.audit.canonical import canonical_json
from sandbox.audit.records import Signature
from sandbox.errors import SigningKeyError

if TYPE_CHECKING:  # cryptography loads with the first Ed25519 key (HMAC and unsigned do not)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

HMAC_KEY_ENV = "SANDBOX_AUDIT_HMAC_KEY"
HMAC_KEY_FILE_ENV = "SANDBOX_AUDIT_HMAC_KEY_FILE"
ED25519_KEY_FILE_ENV = "SANDBOX_AUDIT_ED25519_KEY_FILE"
ED25519_PUBLIC_KEY_FILE_ENV = "SANDBOX_AUDIT_ED25519_PUBLIC_KEY_FILE"
MIN_HMAC_KEY_BYTES = 16
_DOMAIN = b"sandbox-audit-log-v1\n"


@runtime_checkable
class Signer(Protocol):
    """Signs the footer message of an audit log."""

    algorithm: str
    key_id: str

    def sign(self, message: bytes) -> Signature: ...


@runtime_checkable
class SignatureVerifier(Protocol):
    """Checks a footer signature; `key_id` lets a mismatch name the key."""

    algorithm: str
    key_id: str

    def verify(self, signature: Signature, message: bytes) -> bool: ...


def signed_message(footer: dict[str, Any]) -> bytes:
    """The bytes a signature covers: domain tag + canonical footer without signature/hash."""
    body = {k: v for k, v in footer.items() if k not in ("signature", "hash")}
    return _DOMAIN + canonical_json(body).encode("utf-8", "surrogatepass")


# --- HMAC ----------------------------------------------------------------------------------


def hmac_key_id(key: bytes) -> str:
    """Fingerprint of an HMAC key (it does not reveal the key)."""
    return "hmac:" + hashlib.sha256(b"sandbox-hmac-key-id\n" + key).hexdigest()[:16]


def _check_hmac_key(key: bytes) -> bytes:
    if len(key) < MIN_HMAC_KEY_BYTES:
        raise SigningKeyError(
            f"HMAC key too short ({len(key)} bytes, need >= {MIN_HMAC_KEY_BYTES})"
        )
    return key


class HmacSigner:
    """HMAC-SHA256 with a shared key; whoever holds the key can verify (and sign)."""

    algorithm = "hmac-sha256"

    def __init__(self, key: bytes) -> None:
        self._key = _check_hmac_key(key)
        self.key_id = hmac_key_id(self._key)

    def sign(self, message: bytes) -> Signature:
        """HMAC the message."""
        value = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return Signature(algorithm="hmac-sha256", key_id=self.key_id, value=value)


class HmacVerifier:
    """Checks HMAC-SHA256 signatures with the shared key."""

    algorithm = "hmac-sha256"

    def __init__(self, key: bytes) -> None:
        self._key = _check_hmac_key(key)
        self.key_id = hmac_key_id(self._key)

    def verify(self, signature: Signature, message: bytes) -> bool:
        """True when the algorithm, key and value all match."""
        if signature.algorithm != self.algorithm or signature.key_id != self.key_id:
            return False
        expected = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature.value)


def read_hmac_key(path: Path) -> bytes:
    """An HMAC key file's content, surrounding whitespace stripped."""
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise SigningKeyError(f"cannot read HMAC key {path}: {exc.strerror or exc}") from exc
    return _check_hmac_key(key)


# --- Ed25519 ------------------------------------------------------------------------------


def ed25519_key_id(public: Ed25519PublicKey) -> str:
    """Fingerprint of an Ed25519 public key: SHA-256 of its raw bytes, shortened."""
    from cryptography.hazmat.primitives import serialization

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def load_ed25519_private(path: Path) -> Ed25519PrivateKey:
    """Load an unencrypted PKCS#8 PEM Ed25519 private key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read(path, "Ed25519 private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: not an Ed25519 private key")
    return key


def load_ed25519_public(path: Path) -> Ed25519PublicKey:
    """Load an Ed25519 public key (PEM SubjectPublicKeyInfo; a private key PEM also works)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = _read(path, "Ed25519 public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        try:
            return load_ed25519_private(path).public_key()
        except SigningKeyError:
            raise SigningKeyError(f"{path}: not a PEM Ed25519 public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path}: not an Ed25519 public key")
    return key


class Ed25519Signer:
    """Signs with an Ed25519 private key; anyone with the public key can verify."""

    algorithm = "ed25519"

    def __init__(
        self, private_key_path: Path | None = None, *, key: Ed25519PrivateKey | None = None
    ):
        if key is None:
            if private_key_path is None:
                raise SigningKeyError("Ed25519Signer needs a key file or a key")
            key = load_ed25519_private(private_key_path)
        self._key = key
        self.key_id = ed25519_key_id(key.public_key())

    def sign(self, message: bytes) -> Signature:
        """Sign the message."""
        return Signature(
            algorithm="ed25519", key_id=self.key_id, value=self._key.sign(message).hex()
        )


class Ed25519Verifier:
    """Checks Ed25519 signatures with a public key."""

    algorithm = "ed25519"

    def __init__(self, public_key_path: Path | None = None, *, key: Ed25519PublicKey | None = None):
        if key is None:
            if public_key_path is None:
                raise SigningKeyError("Ed25519Verifier needs a key file or a key")
            key = load_ed25519_public(public_key_path)
        self._key = key
        self.key_id = ed25519_key_id(key)

    def verify(self, signature: Signature, message: bytes) -> bool:
        """True when the signature is a valid Ed25519 signature of the message by this key."""
        from cryptography.exceptions import InvalidSignature

        if signature.algorithm != self.algorithm:
            return False
        try:
            self._key.verify(bytes.fromhex(signature.value), message)
        except (InvalidSignature, ValueError):
            return False
        return True


# --- key generation and configuration -------------------------------------------------------


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def generate_hmac_key(path: Path) -> str:
    """Write a new random HMAC key (64 hex characters) to a new 0600 file; return its key_id."""
    key = os.urandom(32).hex().encode("ascii")
    _write_secret(Path(path), key + b"\n")
    return hmac_key_id(key)


def generate_ed25519_key(path: Path) -> tuple[Path, str]:
    """Write a new Ed25519 private key (0600) and PATH.pub; return (public path, key_id)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = Path(path)
    pub_path = path.with_name(path.name + ".pub")
    if pub_path.exists():
        raise FileExistsError(f"{pub_path} exists")
    _write_secret(path, pem)
    pub_path.write_bytes(pub_pem)
    return pub_path, ed25519_key_id(key.public_key())


@dataclass(frozen=True)
class VerifyKeys:
    """Keys to check log signatures with (none: signatures are left unchecked)."""

    hmac_key: bytes | None = None
    public_key: Path | None = None

    @classmethod
    def from_files(cls, hmac_key_file: Path | None, public_key: Path | None) -> VerifyKeys:
        """Read an HMAC key file (raw bytes, surrounding whitespace stripped)."""
        key = read_hmac_key(hmac_key_file) if hmac_key_file is not None else None
        return cls(hmac_key=key, public_key=public_key)


def verifiers_for(
    hmac_key: bytes | None = None,
    public_key: Path | None = None,
    key: SignatureVerifier | None = None,
) -> list[SignatureVerifier]:
    """The verifiers for the keys given (none: signatures stay unchecked)."""
    out: list[SignatureVerifier] = []
    if key is not None:
        out.append(key)
    if hmac_key is not None:
        out.append(HmacVerifier(hmac_key))
    if public_key is not None:
        out.append(Ed25519Verifier(public_key))
    return out


def signer_from_file(path: Path) -> Signer:
    """A signer from one key file: a PEM file is an Ed25519 private key, anything else an
    HMAC key. Raises SigningKeyError (one line, no key material) when it is neither."""
    data = _read(Path(path), "signing key")
    if data.lstrip().startswith(b"-----BEGIN"):
        return Ed25519Signer(Path(path))
    key = data.strip()
    if not all(32 < b < 127 for b in key):
        raise SigningKeyError(
            f"{path}: neither an Ed25519 private key (PEM) nor an HMAC key (one line of text)"
        )
    return HmacSigner(_check_hmac_key(key))


def signer_from_env(env: dict[str, str] | None = None) -> Signer | None:
    """A signer configured by environment variables, or None.

    SANDBOX_AUDIT_ED25519_KEY_FILE (private key PEM) wins over
    SANDBOX_AUDIT_HMAC_KEY_FILE, which wins over SANDBOX_AUDIT_HMAC_KEY (the key text).
    """
    env = dict(os.environ) if env is None else env
    if env.get(ED25519_KEY_FILE_ENV):
        return Ed25519Signer(Path(env[ED25519_KEY_FILE_ENV]))
    if env.get(HMAC_KEY_FILE_ENV):
        return HmacSigner(read_hmac_key(Path(env[HMAC_KEY_FILE_ENV])))
    if env.get(HMAC_KEY_ENV):
        return HmacSigner(env[HMAC_KEY_ENV].strip().encode("utf-8"))
    return None


__all__ = [
    "ED25519_KEY_FILE_ENV",
    "ED25519_PUBLIC_KEY_FILE_ENV",
    "HMAC_KEY_ENV",
    "HMAC_KEY_FILE_ENV",
    "Ed25519Signer",
    "Ed25519Verifier",
    "HmacSigner",
    "HmacVerifier",
    "SignatureVerifier",
    "Signer",
    "SigningKeyError",
    "VerifyKeys",
    "generate_ed25519_key",
    "generate_hmac_key",
    "hmac_key_id",
    "load_ed25519_private",
    "load_ed25519_public",
    "read_hmac_key",
    "signed_message",
    "signer_from_env",
    "signer_from_file",
    "verifiers_for",
]
