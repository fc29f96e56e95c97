"""What an obfuscated command says once its literals are decoded.

`echo a2lsbCAtMQ== | base64 -d | sh`, `perl -e 'eval pack("H*","6b696c6c")'` or
`echo 1- llik | rev | sh` hide the command in a literal. `decoded_texts` returns the text of
every base64 or hex literal in a command that decodes to printable text, and the reverse of
quoted strings when the command pipes through `rev`, so the command rules run on what would
really run. Bounded: a few literals per command, each at most a few KiB.
"""

from __future__ import annotations

import base64
import binascii
import re

MAX_LITERALS = 8
MAX_LITERAL = 4096
_B64 = re.compile(r"(?<![A-Za-z0-9+/=_.-])[A-Za-z0-9+/]{12,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(
    r"(?<![0-9A-Za-z])(?:[0-9a-fA-F]{2}){8,}(?![0-9A-Za-z])|(?:\\x[0-9a-fA-F]{2}){6,}"
)
_QUOTED = re.compile(r"'([^']{4,})'|\"([^\"]{4,})\"")
_REV = re.compile(r"\|\s*rev\b")


def _printable(data: bytes) -> str | None:
    """The bytes as text if they read as a command: mostly printable ASCII, with a space,
    slash or separator in it (a path or a sentence, not a random blob)."""
    if len(data) < 4:
        return None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    good = sum(c.isprintable() or c in "\n\t" for c in text)
    if good < 0.95 * len(text) or not re.search(r"[\s/;|&]", text):
        return None
    return text


def decoded_texts(command: str) -> list[str]:
    """The decoded forms of the literals hidden in `command` (often none)."""
    out: list[str] = []
    for i, m in enumerate(_B64.finditer(command)):
        if i >= MAX_LITERALS:
            break
        blob = m.group()[:MAX_LITERAL]
        if "/" in blob and not re.search(r"[A-Z0-9+=]", blob):
            continue  # a path of lower-case words, not base64
        try:
            data = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        text = _printable(data)
        if text is not None:
            out.append(text)
    for i, m in enumerate(_HEX.finditer(command)):
        if i >= MAX_LITERALS:
            break
        digits = m.group()[:MAX_LITERAL].replace("\\x", "")
        try:
            text = _printable(bytes.fromhex(digits))
        except ValueError:
            continue
        if text is not None:
            out.append(text)
    if _REV.search(command):
        for i, m in enumerate(_QUOTED.finditer(command)):
            if i >= MAX_LITERALS:
                break
            out.append((m.group(1) or m.group(2))[::-1])
    return out


__all__ = ["decoded_texts"]
