"""Build hook: ships ``floe_otel_distro-guard.pth`` at the top of site-packages (see ``floe_otel_distro/_guard.py``).

Everything else about the package is declared in ``pyproject.toml``.
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "floe_otel_distro-guard.pth"


class BuildPyWithGuard(build_py):
    """``build_py`` that also copies the start-up guard's ``.pth`` file into the wheel's root."""

    def run(self) -> None:
        super().run()
        self.copy_file(PTH, os.path.join(self.build_lib, PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH)]


setup(cmdclass={"build_py": BuildPyWithGuard})
