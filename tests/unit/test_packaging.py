"""The wheel as users get it: only our names at the top of site-packages, the licence, the start-up guard."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_contents(tmp_path: Path) -> None:
    """Top level: floe_otel_distro/, its .pth guard and dist-info only (no top-level ``configurators``);
    the LICENSE and the SPDX expression are in the metadata."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = tmp_path.glob("floe_otel_distro-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    dist_info = next(t for t in top if t.endswith(".dist-info"))
    assert top == {"floe_otel_distro", "floe_otel_distro-guard.pth", dist_info}
    assert "floe_otel_distro/configurators/console.py" in names
    assert f"{dist_info}/licenses/LICENSE" in names
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    pth = zipfile.ZipFile(wheel).read("floe_otel_distro-guard.pth").decode()
    assert pth.startswith("import os;") and "floe_otel_distro._guard" in pth
