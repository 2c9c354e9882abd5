"""Shared fixtures: the real collector, and a clean settings environment for unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.collector import Collector


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    """A real OpenTelemetry Collector writing what it receives to files under ``tmp_path``."""
    workdir = tmp_path / "collector"
    workdir.mkdir()
    c = Collector(workdir)
    yield c
    c.stop()

