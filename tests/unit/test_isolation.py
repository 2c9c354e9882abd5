"""floe_otel_distro._isolation: the operator tree's start-up (Python-minor check, dependency layer, conflicts)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from floe_otel_distro import _isolation


def _tree(tmp_path: Path, minor: str | None = None) -> Path:
    tree = tmp_path / "tree"
    (tree / "opentelemetry" / "instrumentation" / "auto_instrumentation").mkdir(parents=True)
    (tree / _isolation.DEPS_DIR).mkdir()
    if minor is not None:
        (tree / _isolation.VERSION_FILE).write_text(minor + "\n")
    return tree


def _dist(where: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    info = where / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def test_isolate_appends_the_dependency_layer_after_site_packages(tmp_path: Path) -> None:
    """floe-deps goes to the very end, once, whatever was on the path before."""
    tree = _tree(tmp_path)
    deps = str(tree / _isolation.DEPS_DIR)
    path = [str(tree / "opentelemetry/instrumentation/auto_instrumentation"), deps, str(tree), "/usr/lib/python3",
            "/app/site-packages"]
    _isolation.isolate(str(tree), path)
    assert path[-1] == deps and path.count(deps) == 1 and path[-2] == "/app/site-packages"


def test_detach_takes_every_tree_entry_off(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    path = ["", str(tree / "opentelemetry/instrumentation/auto_instrumentation"), "/app", str(tree),
            str(tree / _isolation.DEPS_DIR), str(tmp_path / "tree-other")]
    _isolation.detach(str(tree), path)
    assert path == ["", "/app", str(tmp_path / "tree-other")]


def test_wrong_minor_is_one_line_and_the_tree_leaves_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tree built for another minor: one floe-otel line naming both versions, nothing initialised."""
    monkeypatch.setattr(sys, "orig_argv", ["python", "app.py"], raising=False)
    tree = _tree(tmp_path, minor="3.9")
    path = [str(tree / "opentelemetry/instrumentation/auto_instrumentation"), str(tree), "/app/site-packages"]
    assert _isolation.start(str(tree), path) is False
    running = "{}.{}".format(*sys.version_info[:2])
    err = capsys.readouterr().err.splitlines()
    assert err == [f"floe-otel: {_isolation.minor_mismatch_line('3.9', running)}"]
    assert "Python 3.9" in err[0] and f"Python {running}" in err[0]
    assert path == ["/app/site-packages"]


def test_conflicts_name_the_unmet_requirement_but_not_the_distros_own(tmp_path: Path) -> None:
    """The app's protobuf 4 under opentelemetry-proto's >=5 is a conflict; floe-otel-distro's pydantic>=2 is not."""
    tree = _tree(tmp_path)
    _dist(tree, "opentelemetry_proto", "1.45.1", ("protobuf<8.0,>=5.0", "grpcio; extra == 'grpc'"))
    _dist(tree, "floe_otel_distro", "0.1.0", ("pydantic<3,>=2.7",))
    theirs = {"protobuf": ("4.25.8", "/app"), "pydantic": ("1.10.26", "/app"), "grpcio": ("1.0", "/app")}
    assert _isolation.conflicts(str(tree), theirs) == [
        "the application's protobuf 4.25.8 does not meet opentelemetry-proto's protobuf<8.0,>=5.0"
    ]
    assert _isolation.conflicts(str(tree), {"protobuf": ("6.33.6", "/app")}) == []


def test_doctor_invocation_is_recognised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "floe_otel_distro.cli", "doctor"], raising=False)
    assert _isolation.is_doctor()
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "app"], raising=False)
    assert not _isolation.is_doctor()


def test_start_never_raises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(tree: str, path: list[str]) -> bool:
        raise RuntimeError("bug")

    monkeypatch.setattr(_isolation, "_start", boom)
    assert _isolation.start(str(tmp_path), []) is False
    assert capsys.readouterr().err.startswith("floe-otel: the auto-instrumentation start-up failed (RuntimeError: bug)")


def test_shadowed_finds_the_apps_first_copy_outside_the_tree(tmp_path: Path) -> None:
    """Only packages of floe-deps count; the first copy on the path (outside the tree) wins, as for imports."""
    tree = _tree(tmp_path)
    deps = tree / _isolation.DEPS_DIR
    _dist(deps, "pydantic", "2.14.4")
    _dist(deps, "PyYAML", "6.0.4")
    first, second = tmp_path / "app1", tmp_path / "app2"
    _dist(first, "pydantic", "1.10.26")
    _dist(second, "pydantic", "1.9.0")
    _dist(second, "dagster", "1.13.27")
    path = [str(tree), str(first), str(second), str(deps)]
    assert _isolation.shadowed(str(tree), str(deps), path) == {"pydantic": ("1.10.26", str(first))}


def test_multiprocessings_resource_tracker_is_left_as_without_the_operator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """dbt starts it in every build; it runs no program code: no line, nothing initialised, the tree off the path."""
    tracker = "from multiprocessing.resource_tracker import main;main(4)"
    monkeypatch.setattr(sys, "orig_argv", ["python", "-B", "-c", tracker], raising=False)
    tree = _tree(tmp_path, minor="3.9")  # not even the minor check's line
    path = [str(tree / "opentelemetry/instrumentation/auto_instrumentation"), str(tree), "/app/site-packages"]
    assert _isolation.start(str(tree), path) is False
    assert capsys.readouterr().err == ""
    assert path == ["/app/site-packages"]
