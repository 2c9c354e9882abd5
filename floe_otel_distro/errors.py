"""Configuration errors, the fail-open / strict policy, and secret redaction for anything we print.

Every problem is reported as exactly one stderr line starting ``floe-otel:`` that names the variable
or field, the bad value (unless secret) and the fix. Fail-open: the program then runs without
telemetry. ``FLOE_OTEL_STRICT=true``: the same line, then the process exits with status 78 (EX_CONFIG)
before the program starts.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

STRICT_EXIT_STATUS = 78  # EX_CONFIG from sysexits.h
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@")
_SECRET_KEY = re.compile(r"(authorization|api[-_]?key|token|secret|password|passwd)", re.IGNORECASE)


class ConfigError(Exception):
    """A bad configuration input: where it came from, the (redacted) value and how to fix it."""

    def __init__(self, where: str, value: str, fix: str, *, secret: bool = False) -> None:
        self.where = where
        self.value = "<redacted>" if secret else value
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        """The single stderr line for this error."""
        shown = f"={self.value!r}" if self.value != "" else ""
        return f"floe-otel: {self.where}{shown}: {self.fix}"


def redact_url(url: str) -> str:
    """``url`` with any user/password replaced by ``***``, so it can be printed."""
    return _USERINFO.sub(r"\1***:***@", url)


def is_secret_key(name: str) -> bool:
    """Whether a header/config key names a credential."""
    return bool(_SECRET_KEY.search(name))


def report(error: ConfigError, *, strict: bool) -> None:
    """Print the error line; in strict mode stop the process before the program starts."""
    try:
        sys.stderr.write(error.line() + ("" if strict else " (telemetry disabled; the program runs without it)") + "\n")
        sys.stderr.flush()
    except Exception:  # stderr closed: nothing else we can do, and never crash the host
        pass
    if strict:
        os._exit(STRICT_EXIT_STATUS)


def strict_from_env(environ: Mapping[str, str]) -> bool:
    """Strict mode is read before anything else, so it applies even when settings cannot load."""
    return environ.get("FLOE_OTEL_STRICT", "").strip().lower() in ("1", "true", "yes", "on")
