"""The one redaction function behind everything the distro prints, writes or reports.

``redact_url`` removes credentials from a URL of any shape (with or without a scheme, ``@`` or ``/`` in
the password) and the values of its query string; ``redact`` walks any value (mappings at any depth,
lists, strings) and replaces secret-named keys' values and every URL's credentials.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"
_SECRET_KEY = r"(authorization|api[-_]?key|token|secret|password|passwd|pwd|credential|private[-_]?key|auth)"
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)")  # redact_url runs at start-up (the plan shows endpoints)


@functools.cache
def _compiled(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """``pattern`` compiled on first use: a start-up redacts URLs only, not keys or free text (issue 7)."""
    return re.compile(pattern, flags)


def is_secret_key(name: str) -> bool:
    """Whether a header / config key names a credential."""
    return bool(_compiled(_SECRET_KEY, re.IGNORECASE).search(name))


def redact_url(url: str) -> str:
    """``url`` without user info (``***``) and without query-string values; safe to print."""
    text = str(url)
    match = _SCHEME.match(text)
    scheme = match.group(1) if match else ""
    rest = text[len(scheme) :]
    # The authority ends at the first '/', '?' or '#' after the last '@' that precedes the path:
    # a password may itself contain '/' or '@', so take the LAST '@' before the first '?'/'#'.
    head = re.split(r"[?#]", rest, maxsplit=1)[0]
    if "@" in head:
        at = head.rfind("@")
        rest = "***@" + rest[at + 1 :]
    rest, hash_, fragment = rest.partition("#")
    if "?" in rest:
        base, _, query = rest.partition("?")
        keys = [part.split("=", 1)[0] for part in query.split("&") if part]
        rest = base + "?" + "&".join(f"{k}={REDACTED}" for k in keys)
    if hash_:
        rest += "#" + (REDACTED if fragment else "")
    return scheme + rest


_URL_IN_TEXT = r"[^\s'\"<>()]*(?:://|@)[^\s'\"<>()]*"


def redact_text(text: str) -> str:
    """Free text (an exception message…) with every URL-like token in it redacted."""
    return _compiled(_URL_IN_TEXT).sub(
        lambda m: redact_url(m.group()) if ("://" in m.group() or ":" in m.group()) else m.group(), text
    )


def redact(value: Any, *, key: str = "") -> Any:
    """``value`` with secret-named keys' values and URL credentials replaced, at any depth."""
    if key and is_secret_key(key):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): redact(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
