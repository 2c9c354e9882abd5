"""``_records.dataclass`` makes what ``dataclasses.dataclass`` makes (issue 7: records without compiling).

Every record of the distro is built twice, by ``_records.dataclass`` and by the standard decorator (its
module executed again with the standard one), and the two are compared: fields, params, signature,
docstring, the attributes set on the class, and what instances do (init errors, repr, equality, hash,
frozen assignment, ``asdict``/``replace``). Synthetic classes cover the shapes the distro does not use yet,
and the shapes that must go to the standard decorator.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import math
import pickle
import re
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from floe_otel_distro import _records

# the modules whose records are made on the start path (or in an instrumentor's hot path)
RECORD_MODULES = (
    "floe_otel_distro._state",
    "floe_otel_distro.env",
    "floe_otel_distro.backends",
    "floe_otel_distro.plan",
    "floe_otel_distro.plugin",
    "floe_otel_distro.installer",
    "floe_otel_distro.delivery",
    "floe_otel_distro.instrumentation.dbt",
    "floe_otel_distro.instrumentation.dagster",
)


def _records_of(module: types.ModuleType) -> dict[str, type]:
    return {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == module.__name__
    }


def _standard_twin(name: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """``name`` executed again under another name, its records made by ``dataclasses.dataclass``."""
    original = importlib.import_module(name)
    twin = types.ModuleType(f"{name}__standard")
    twin.__file__ = original.__file__
    twin.__package__ = original.__package__
    monkeypatch.setitem(sys.modules, twin.__name__, twin)  # for pickle, and dataclasses' own look-ups
    code = compile(inspect.getsource(original), str(original.__file__), "exec")
    fast = _records.dataclass
    _records.dataclass = dataclasses.dataclass
    try:
        exec(code, twin.__dict__)  # the module's own source
    finally:
        _records.dataclass = fast
    return twin


def _field_facts(f: dataclasses.Field[Any]) -> tuple[Any, ...]:
    return (
        f.name,
        f.type,
        f.default,
        f.default_factory,
        f.init,
        f.repr,
        f.compare,
        f.hash,
        dict(f.metadata),
        f.kw_only,
        f._field_type,
    )


def _class_facts(cls: type) -> dict[str, Any]:
    own = {k for k in vars(cls) if k not in {"__dict__", "__weakref__", "__module__", "__firstlineno__"}}
    return {
        "attributes": sorted(own),
        "fields": [_field_facts(f) for f in cls.__dataclass_fields__.values()],  # type: ignore[attr-defined]
        "params": repr(cls.__dataclass_params__),  # type: ignore[attr-defined]
        "signature": str(inspect.signature(cls)),
        "doc": cls.__doc__,
        "match_args": getattr(cls, "__match_args__", None),
        "hashable": cls.__hash__ is not None,
        "defaults": {k: getattr(cls, k, "<absent>") for k in cls.__dataclass_fields__},  # type: ignore[attr-defined]
        "init_annotations": cls.__init__.__annotations__,  # type: ignore[misc]
    }


def _sample_args(cls: type, salt: str) -> dict[str, Any]:
    """A value for each field without a default (a string: the records do not check types)."""
    return {
        f.name: f"{salt}-{f.name}"
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }


def _outcome(action: Callable[[], Any]) -> Any:
    try:
        return ("ok", repr(action()))
    except Exception as exc:  # the exception is what is compared
        return ("raised", type(exc).__name__, str(exc))


def _behaviour(cls: type) -> list[Any]:
    """What instances of ``cls`` do, as comparable data."""
    args = _sample_args(cls, "a")
    one, same, other = cls(**args), cls(**args), cls(**_sample_args(cls, "b"))
    positional = list(args.values())
    first = dataclasses.fields(cls)[0].name
    out = [
        repr(one),
        one == same,
        one == other,
        one != same,
        one == object(),
        _outcome(lambda: hash(one) == hash(same)),
        _outcome(lambda: cls(*positional) == one),
        _outcome(lambda: cls(*positional, *positional, "extra")),
        _outcome(lambda: cls(**args, unknown=1)),
        _outcome(lambda: cls(*positional[:1], **args) if positional else "no required field"),
        _outcome(cls),
        _outcome(lambda: setattr(one, first, "changed")),
        _outcome(lambda: delattr(same, first)),
        _outcome(lambda: setattr(one, "not_a_field", 1)),
        _outcome(lambda: repr(dataclasses.asdict(other))),
        _outcome(lambda: repr(dataclasses.astuple(other))),
        _outcome(lambda: repr(dataclasses.replace(other, **{first: "replaced"}))),
        _outcome(lambda: copy.deepcopy(other) == other),
        list(vars(cls(**args))),
        _outcome(lambda: pickle.loads(pickle.dumps(one)) == one),
    ]
    return out


def _comparable(value: Any, module: str = "") -> Any:
    """``value`` without what differs between two executions of one module: addresses, the module's name."""
    if isinstance(value, (list, tuple)):
        return type(value)(_comparable(v, module) for v in value)
    if isinstance(value, dict):
        return {k: _comparable(v, module) for k, v in value.items()}
    if callable(value) and not isinstance(value, type):
        value = f"<callable {getattr(value, '__qualname__', type(value).__qualname__)}>"
    if isinstance(value, str):
        value = re.sub(r" at 0x[0-9a-f]+", " at 0x?", value)
        return value.replace(module, "<module>") if module else value
    return value


@pytest.mark.parametrize("module_name", RECORD_MODULES)
def test_the_distros_records_are_the_standard_ones(module_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module(module_name)
    twin = _standard_twin(module_name, monkeypatch)
    mine, standard = _records_of(module), _records_of(twin)
    assert mine, f"{module_name} has no records"
    assert sorted(mine) == sorted(standard)
    for name, cls in mine.items():
        assert cls.__init__.__code__.co_filename == _records.__file__, f"{name}: not made by _records"  # type: ignore[misc]
        assert standard[name].__init__.__code__.co_filename != _records.__file__  # type: ignore[misc]
        ours = _comparable([_class_facts(cls), _behaviour(cls)], module_name)
        assert ours == _comparable([_class_facts(standard[name]), _behaviour(standard[name])], twin.__name__), name


# --- synthetic shapes ------------------------------------------------------------------------------------
SHAPES = {
    "plain": """
        class C:
            a: int
            b: str = "x"
    """,
    "empty": """
        class C:
            pass
    """,
    "factory and options": """
        class C:
            '''Has a docstring.'''
            a: int
            b: list[int] = field(default_factory=list)
            c: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
            d: float = field(default=1.5, hash=False, metadata={"unit": "s"})
            e: Any = field(default=None, hash=True, compare=False)

            def method(self) -> int:
                return self.a

            @property
            def prop(self) -> int:
                return self.a
    """,
    "a field named self": """
        class C:
            self: int
            other: int = 0
    """,
    "nan": """
        class C:
            x: float
    """,
    "recursive": """
        class C:
            child: Any = None
    """,
}

# shapes the standard decorator must make (or reject): _records must not take them
STANDARD_ONLY = {
    "classvar": """
        class C:
            a: int
            b: ClassVar[int] = 3
    """,
    "aliased classvar": """
        class C:
            a: int
            b: CV[int] = 3
    """,
    "initvar": """
        class C:
            a: int
            b: InitVar[int] = 0

            def __post_init__(self, b: int) -> None:
                pass
    """,
    "kw_only field": """
        class C:
            a: int = field(kw_only=True)
    """,
    "init=False": """
        class C:
            a: int = field(init=False, default=1)
    """,
    "own __repr__": """
        class C:
            a: int

            def __repr__(self) -> str:
                return "mine"
    """,
    "own __eq__": """
        class C:
            a: int

            def __eq__(self, other: object) -> bool:
                return True
    """,
    "a base class": """
        class Base:
            pass

        class C(Base):
            a: int
    """,
    "slots": """
        class C:
            __slots__ = ("a",)
            a: int
    """,
}

# shapes the standard decorator rejects: the same error from both
ERRORS = {
    "mutable default": """
        class C:
            a: list[int] = []
    """,
    "required after default": """
        class C:
            a: int = 1
            b: int
    """,
    "field without annotation": """
        class C:
            a = field(default=1)
            b: int = 2
    """,
}


def _make(source: str, decorator: Any, frozen: bool) -> type:
    """Class ``C`` of ``source`` (in a module of its own, as the distro's are) made by ``decorator``."""
    module = types.ModuleType(f"_records_shape_{abs(hash((source, decorator, frozen)))}")
    sys.modules[module.__name__] = module  # removed by the _shape_modules fixture
    prelude = (
        "from __future__ import annotations\nfrom typing import Any, ClassVar\nfrom typing import ClassVar as CV\n"
    )
    prelude += "from dataclasses import InitVar, field\n"
    exec(prelude + textwrap.dedent(source), module.__dict__)  # the test's own source
    return decorator(frozen=frozen)(module.__dict__["C"])  # type: ignore[no-any-return]


@pytest.fixture
def _shape_modules() -> Iterator[None]:
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("_records_shape_"):
            del sys.modules[name]


@pytest.mark.usefixtures("_shape_modules")
@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_shapes_match_the_standard_decorator(shape: str, frozen: bool) -> None:
    mine = _make(SHAPES[shape], _records.dataclass, frozen)
    standard = _make(SHAPES[shape], dataclasses.dataclass, frozen)
    assert mine.__init__.__code__.co_filename == _records.__file__  # type: ignore[misc]
    assert _comparable(_class_facts(mine)) == _comparable(_class_facts(standard))
    if dataclasses.fields(mine):
        ours = _comparable(_behaviour(mine), mine.__module__)
        assert ours == _comparable(_behaviour(standard), standard.__module__)


@pytest.mark.usefixtures("_shape_modules")
@pytest.mark.parametrize("frozen", [False, True])
def test_nan_and_recursion_behave_as_the_standard_decorator(frozen: bool) -> None:
    for decorator in (_records.dataclass, dataclasses.dataclass):
        nan_class = _make(SHAPES["nan"], decorator, frozen)
        nan = float("nan")
        assert math.isnan(nan_class(nan).x)
        results = (nan_class(nan) == nan_class(nan), nan_class(nan) == nan_class(float("nan")))
        expected = (sys.version_info < (3, 13), False)  # 3.13 compares field by field, earlier versions tuples
        assert results == expected, decorator
        tree = _make(SHAPES["recursive"], decorator, frozen=False)
        loop = tree()
        loop.child = loop
        assert repr(loop) == "C(child=...)"


@pytest.mark.usefixtures("_shape_modules")
@pytest.mark.parametrize("shape", sorted(STANDARD_ONLY))
def test_other_shapes_go_to_the_standard_decorator(shape: str) -> None:
    cls = _make(STANDARD_ONLY[shape], _records.dataclass, frozen=False)
    assert cls.__init__.__code__.co_filename != _records.__file__  # type: ignore[misc]
    assert dataclasses.is_dataclass(cls)


@pytest.mark.usefixtures("_shape_modules")
@pytest.mark.parametrize("shape", sorted(ERRORS))
def test_invalid_shapes_raise_the_standard_error(shape: str) -> None:
    errors = []
    for decorator in (_records.dataclass, dataclasses.dataclass):
        with pytest.raises((TypeError, ValueError)) as caught:
            _make(ERRORS[shape], decorator, frozen=False)
        errors.append((type(caught.value), str(caught.value)))
    assert errors[0] == errors[1]


@pytest.mark.usefixtures("_shape_modules")
def test_a_standard_subclass_of_a_record() -> None:
    """A plugin author's ``@dataclasses.dataclass`` subclass of a distro record (frozen into frozen)."""
    base = _make(SHAPES["plain"], _records.dataclass, frozen=True)
    sub = dataclasses.dataclass(frozen=True)(type("Sub", (base,), {"__annotations__": {"c": "int"}, "c": 0}))
    made = sub(1, "y", 2)
    assert [f.name for f in dataclasses.fields(made)] == ["a", "b", "c"]
    assert (made.a, made.b, made.c) == (1, "y", 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.a = 2  # type: ignore[misc]
    with pytest.raises(TypeError, match="non-frozen"):
        dataclasses.dataclass(type("Thawed", (base,), {"__annotations__": {"c": "int"}, "c": 0}))


def test_the_decorator_used_bare_and_with_arguments() -> None:
    bare = _records.dataclass(type("Bare", (), {"__annotations__": {"a": "int"}, "__module__": __name__}))
    called = _records.dataclass()(type("Called", (), {"__annotations__": {"a": "int"}, "__module__": __name__}))
    assert bare(1) == bare(1)
    assert called(a=2).a == 2
