"""Bounded reads of the files the environment names: floe.yaml, manifest.yaml, compiled artifacts, headers.

A file must be a regular file (a FIFO, a device or a directory is refused without blocking) no larger
than its cap; YAML aliases may not expand a document past ``MAX_YAML_NODES`` nodes (a "billion laughs"
document is an error, not a hang). Every failure is a :class:`FileProblem` naming the variable or
field, the path and the fix; nothing here raises anything else.
"""

from __future__ import annotations

import os
import stat
from typing import Any

MAX_YAML_BYTES = 256 * 1024  # a floe manifest is a few KiB
MAX_HEADERS_BYTES = 64 * 1024
MAX_JSON_BYTES = 8 * 1024 * 1024  # compiled_artifacts.json carries dbt profiles and contracts too
MAX_YAML_NODES = 20_000


class FileProblem(Exception):
    """A file that cannot be used: ``where`` (variable / field), the path, and what to do."""

    def __init__(self, where: str, path: str, message: str) -> None:
        self.where = where
        self.path = path
        self.message = message
        super().__init__(f"{where}={path!r}: {message}")


def read_text(path: str, where: str, cap: int) -> str:
    """The file's text; refuses non-regular files and files over ``cap`` bytes (never blocks)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileProblem(where, path, f"cannot open the file ({exc.strerror}); fix the path") from None
    except ValueError:  # an embedded NUL byte
        raise FileProblem(where, path.replace("\x00", "\\0"), "not a valid path; fix it") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem(where, path, "not a regular file; point it at a file")
        if info.st_size > cap:
            raise FileProblem(where, path, f"the file is {info.st_size} bytes, over the {cap}-byte limit")
        data = os.read(fd, cap + 1)
        if len(data) > cap:
            raise FileProblem(where, path, f"the file is over the {cap}-byte limit")
    except OSError as exc:
        raise FileProblem(where, path, f"cannot read the file ({exc.strerror}); fix the path") from None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileProblem(where, path, "the file is not UTF-8 text") from None


def _bounded(doc: Any, budget: int) -> bool:
    """Whether ``doc`` (aliases expanded, as a consumer walking it would see it) has at most ``budget`` nodes."""
    stack = [doc]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > budget:
            return False
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return True


def load_yaml(path: str, where: str) -> dict[str, Any]:
    """A YAML mapping from ``path`` (size-capped, alias expansion bounded)."""
    import yaml

    text = read_text(path, where, MAX_YAML_BYTES)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise FileProblem(where, path, f"invalid YAML{at}; fix the file's syntax") from None
    except RecursionError:
        raise FileProblem(where, path, "the YAML nests too deeply") from None
    if not isinstance(doc, dict):
        raise FileProblem(where, path, "the YAML document must be a mapping")
    if not _bounded(doc, MAX_YAML_NODES):
        raise FileProblem(where, path, f"the document expands to over {MAX_YAML_NODES} nodes (YAML aliases?)")
    return doc


def load_json(path: str, where: str) -> dict[str, Any]:
    """A JSON object from ``path`` (size-capped), e.g. floe's ``compiled_artifacts.json``."""
    import json

    text = read_text(path, where, MAX_JSON_BYTES)
    try:
        doc = json.loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        raise FileProblem(where, path, f"invalid JSON{f' at line {line}' if line else ''}; fix the file") from None
    except RecursionError:
        raise FileProblem(where, path, "the JSON nests too deeply") from None
    if not isinstance(doc, dict):
        raise FileProblem(where, path, "the JSON document must be an object")
    return doc
