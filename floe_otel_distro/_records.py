"""``@dataclass`` for floe's own records, without the cost of making them at start-up (issue 7).

The standard decorator writes each class's ``__init__``, ``__repr__``, ``__eq__``, ``__hash__`` and
``__setattr__``/``__delattr__`` as source text and compiles it: 0.2-3 ms per class (the most for the most
fields), ~14 ms for the distro's nineteen records on the start path. :func:`dataclass` makes the same
methods as closures over the field list, so nothing is compiled. The result is a real dataclass:
``__dataclass_fields__`` (``dataclasses.Field`` objects) and ``__dataclass_params__`` are set, so
``dataclasses.fields``/``asdict``/``astuple``/``replace``/``is_dataclass`` work on it, and so does a
subclass decorated with the standard decorator; the signature and class docstring are the standard
decorator's, equality and hash compare the same fields, repr shows the same fields, a frozen instance
raises ``FrozenInstanceError`` (``tests/unit/test_records.py`` compares every record with the standard one).

Only the simple shape is made here: a class with no base but ``object``, string annotations (``from
__future__ import annotations``), no ``ClassVar``/``InitVar``/``KW_ONLY``, fields with a default or a
``default_factory`` (``repr``/``compare``/``hash``/``metadata`` allowed), none of the generated methods
written by hand, and only ``frozen=`` as an option. Anything else goes to ``dataclasses.dataclass``
unchanged (it also raises the standard errors). Type checkers see ``dataclasses.dataclass`` itself.
"""

from __future__ import annotations

import dataclasses
import inspect
import reprlib
import sys
from typing import TYPE_CHECKING, Any

__all__ = ["dataclass"]

if TYPE_CHECKING:
    from dataclasses import dataclass
else:

    def dataclass(cls: type | None = None, /, *, frozen: bool = False) -> Any:
        """``dataclasses.dataclass`` (only ``frozen=``), made without compiling source (see the module)."""

        def wrap(cls: type) -> type:
            return _fast(cls, frozen) or dataclasses.dataclass(cls, frozen=frozen)

        return wrap if cls is None else wrap(cls)


_MISSING = dataclasses.MISSING
_FIELD_MARK = getattr(dataclasses, "_FIELD", None)  # what marks a real field (not a ClassVar/InitVar)
_PARAMS = getattr(dataclasses, "_DataclassParams", None)
_OWN = frozenset(
    {
        "__init__",
        "__repr__",
        "__eq__",
        "__hash__",
        "__setattr__",
        "__delattr__",
        "__post_init__",
        "__slots__",
        "__match_args__",
        "__replace__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
    }
)
_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD


class _Factory:
    """How the standard signature shows a ``default_factory`` default."""

    def __repr__(self) -> str:
        return "<factory>"


_HAS_FACTORY = _Factory()


def _special(annotation: Any, namespace: dict[str, Any]) -> bool:
    """Whether an annotation may be a ClassVar/InitVar/KW_ONLY (then the standard decorator decides)."""
    if (
        not isinstance(annotation, str)
        or "ClassVar" in annotation
        or "InitVar" in annotation
        or "KW_ONLY" in annotation
    ):
        return True
    value = namespace.get(annotation.split("[", 1)[0].strip())  # an alias of one: ``CV = ClassVar``
    if value is None:
        return False
    return value is dataclasses.InitVar or value is dataclasses.KW_ONLY or getattr(value, "_name", None) == "ClassVar"


def _fields(cls: type) -> list[dataclasses.Field[Any]] | None:
    """The class's fields as the standard decorator makes them, or None when the shape is not the simple one."""
    own = cls.__dict__
    annotations = own.get("__annotations__", {})
    namespace = getattr(sys.modules.get(cls.__module__), "__dict__", {})
    fields: list[dataclasses.Field[Any]] = []
    seen_default = False
    for name, annotation in annotations.items():
        if _special(annotation, namespace):
            return None
        default = getattr(cls, name, _MISSING)
        if isinstance(default, dataclasses.Field):
            f = default
            if not f.init or f.kw_only is True:
                return None
        else:
            f = dataclasses.field(default=default)  # type: ignore[arg-type]
        if f.default is not _MISSING and type(f.default).__hash__ is None:
            return None  # a mutable default: the standard decorator raises ValueError
        has_default = f.default is not _MISSING or f.default_factory is not _MISSING
        if seen_default and not has_default:
            return None  # a field without a default after one with: the standard decorator raises TypeError
        seen_default = seen_default or has_default
        f.name, f.type, f.kw_only = name, annotation, False
        f._field_type = _FIELD_MARK  # type: ignore[attr-defined]  # what dataclasses.fields() reads
        fields.append(f)
    if any(isinstance(value, dataclasses.Field) and name not in annotations for name, value in own.items()):
        return None  # a field without an annotation: the standard decorator raises TypeError
    return fields


def _fast(cls: type, frozen: bool) -> type | None:
    """``cls`` made a dataclass without compiling anything, or None (the standard decorator then does it)."""
    if (
        _FIELD_MARK is None
        or _PARAMS is None
        or type(cls) is not type
        or cls.__bases__ != (object,)
        or not _OWN.isdisjoint(cls.__dict__)
    ):
        return None
    fields = _fields(cls)
    if fields is None:
        return None
    extra = (True, False, False, False) if sys.version_info >= (3, 12) else ()  # match_args, kw_only, slots, weakref
    params = _PARAMS(True, True, True, False, False, frozen, *extra)
    for f in fields:  # the class attribute is the default value, never the Field
        if isinstance(cls.__dict__.get(f.name), dataclasses.Field):
            if f.default is _MISSING:
                delattr(cls, f.name)
            else:
                setattr(cls, f.name, f.default)
    cls.__dataclass_params__ = params  # type: ignore[attr-defined]
    cls.__dataclass_fields__ = {f.name: f for f in fields}  # type: ignore[attr-defined]
    names = tuple(f.name for f in fields)
    methods = {
        "__init__": _init(cls, fields, frozen),
        "__repr__": _repr(tuple(f.name for f in fields if f.repr)),
        "__eq__": _eq(tuple(f.name for f in fields if f.compare)),
    }
    if frozen:
        methods["__hash__"] = _hash(tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash)))
        methods["__setattr__"], methods["__delattr__"] = _frozen(cls, frozenset(names))
    if sys.version_info >= (3, 13):
        methods["__replace__"] = _replace
    for name, function in methods.items():
        function.__name__ = name
        function.__qualname__ = f"{cls.__qualname__}.{name}"
        function.__module__ = cls.__module__
        setattr(cls, name, function)
    if not frozen:
        cls.__hash__ = None  # type: ignore[assignment]  # eq without frozen: unhashable, as the standard one
    if not cls.__doc__:  # the standard one: the name and inspect.signature(cls), i.e. __init__'s without self
        signature = methods["__init__"].__signature__
        signature = signature.replace(parameters=tuple(signature.parameters.values())[1:])
        cls.__doc__ = cls.__name__ + str(signature).replace(" -> None", "")
    cls.__match_args__ = names  # type: ignore[attr-defined,misc]
    return cls


def _init(cls: type, fields: list[dataclasses.Field[Any]], frozen: bool) -> Any:
    names = tuple(f.name for f in fields)
    count = len(names)
    index = {name: position for position, name in enumerate(names)}
    defaults = {f.name: f.default for f in fields if f.default is not _MISSING}
    factories = {f.name: f.default_factory for f in fields if f.default_factory is not _MISSING}
    required = count - len(defaults) - len(factories)  # the fields without a default come first
    assign = object.__setattr__ if frozen else setattr
    where = f"{cls.__qualname__}.__init__()"

    def __init__(self: Any, /, *args: Any, **kwargs: Any) -> None:
        given = len(args)
        if given > count:
            takes = f"from {required + 1} to {count + 1}" if required < count else f"{count + 1}"
            msg = f"{where} takes {takes} positional arguments but {given + 1} were given"
            raise TypeError(msg)
        for key in kwargs:
            position = index.get(key)
            if position is None:
                msg = f"{where} got an unexpected keyword argument {key!r}"
                raise TypeError(msg)
            if position < given:
                msg = f"{where} got multiple values for argument {key!r}"
                raise TypeError(msg)
        if given < required:
            missing = [repr(name) for name in names[given:required] if name not in kwargs]
            if missing:
                raise TypeError(_missing(where, missing))
        for name, value in zip(names, args, strict=False):
            assign(self, name, value)
        for name in names[given:]:
            if name in kwargs:
                assign(self, name, kwargs[name])
            elif name in defaults:
                assign(self, name, defaults[name])
            else:
                assign(self, name, factories[name]())

    parameters = [inspect.Parameter("__dataclass_self__" if "self" in index else "self", _POSITIONAL)]
    for f in fields:
        default = _HAS_FACTORY if f.default_factory is not _MISSING else f.default
        parameters.append(
            inspect.Parameter(
                f.name,
                _POSITIONAL,
                default=inspect.Parameter.empty if default is _MISSING else default,
                annotation=f.type,
            )
        )
    __init__.__signature__ = inspect.Signature(parameters, return_annotation=None)  # type: ignore[attr-defined]
    __init__.__annotations__ = {**{f.name: f.type for f in fields}, "return": None}
    return __init__


def _missing(where: str, missing: list[str]) -> str:
    """Python's own message for missing arguments."""
    if len(missing) == 1:
        listed = missing[0]
    elif len(missing) == 2:
        listed = f"{missing[0]} and {missing[1]}"
    else:
        listed = ", ".join(missing[:-1]) + f", and {missing[-1]}"
    plural = "s" if len(missing) > 1 else ""
    return f"{where} missing {len(missing)} required positional argument{plural}: {listed}"


def _repr(names: tuple[str, ...]) -> Any:
    @reprlib.recursive_repr("...")
    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({shown})"

    return __repr__


def _eq(names: tuple[str, ...]) -> Any:
    if sys.version_info >= (3, 13):

        def __eq__(self: Any, other: Any) -> Any:  # 3.13: self is other, then field by field
            if self is other:
                return True
            if other.__class__ is self.__class__:
                result: Any = True
                for name in names:
                    result = getattr(self, name) == getattr(other, name)
                    if not result:
                        return result
                return result
            return NotImplemented

    else:

        def __eq__(self: Any, other: Any) -> Any:  # up to 3.12: the tuples of the fields
            if other.__class__ is self.__class__:
                return tuple(getattr(self, name) for name in names) == tuple(getattr(other, name) for name in names)
            return NotImplemented

    return __eq__


def _hash(names: tuple[str, ...]) -> Any:
    def __hash__(self: Any) -> int:
        return hash(tuple(getattr(self, name) for name in names))

    return __hash__


def _frozen(cls: type, names: frozenset[str]) -> tuple[Any, Any]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            msg = f"cannot assign to field {name!r}"
            raise dataclasses.FrozenInstanceError(msg)
        super(cls, self).__setattr__(name, value)  # type: ignore[arg-type]

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            msg = f"cannot delete field {name!r}"
            raise dataclasses.FrozenInstanceError(msg)
        super(cls, self).__delattr__(name)  # type: ignore[arg-type]

    return __setattr__, __delattr__


def _replace(self: Any, /, **changes: Any) -> Any:
    return dataclasses.replace(self, **changes)
