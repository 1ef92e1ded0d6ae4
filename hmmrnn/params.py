"""Typed parameter schemas, derived from the signature of the function that uses the parameters.

A user-facing parameter is a keyword argument annotated with `Annotated[type, P(help, ...)]`:

    def driven_pca(model, *, steps: Annotated[int, P("driven steps", ge=1)] = 2000, ...)

The signature is the one source: its default is the schema's default, its annotation the type, and
`P` adds the help text, the allowed range or choices, and optionally the model-config key that
supplies the default (`config="noise_std"`: a model trained at noise 0.5 is analysed at 0.5 unless
the user says otherwise). Keyword arguments without `P` are internal and not exposed.

Everything a front-end needs comes from the schema: CLI flags and `--help`, the TUI's parameter
form, the values recorded in sidecars, and the cache key. Text from the CLI (`--kick-units 1,2`) and
from the TUI (`kick_units=1,2`) goes through the same `Param.parse`, so both give the same value.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import shlex
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from hmmrnn.errors import ParamError

__all__ = ["Annotated", "P", "Param", "Schema", "schema_of"]

# Keyword arguments a registry injects into analysis functions; never user parameters.
INJECTED = frozenset({"progress", "cancel", "context", "device", "hmm", "folder"})

KINDS = ("int", "float", "bool", "str", "int_list", "float_list", "int_groups", "json")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", ""}


@dataclass(frozen=True)
class P:
    """Metadata of one user-facing parameter (used inside `Annotated`)."""

    help: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    config: str | None = None  # model-config key whose value is the default when one is known
    length: int | None = None  # lists of exactly this many items (e.g. a pair of outputs)


@dataclass(frozen=True)
class Param:
    """One parameter: name, kind (see KINDS), default, help and the values it accepts."""

    name: str
    kind: str
    default: Any
    help: str
    optional: bool = False
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    config: str | None = None
    length: int | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    # --- description ------------------------------------------------------------------------

    def type_text(self) -> str:
        """`int >= 1`, `list of float`, `one of assignment, study`, `… or none`."""
        base = {
            "int": "int",
            "float": "float",
            "bool": "true/false",
            "str": "text",
            "int_list": "list of int",
            "float_list": "list of float",
            "int_groups": "groups of int (a,b;c,d)",
            "json": "JSON object",
        }[self.kind]
        if self.choices:
            base = "one of " + ", ".join(str(c) for c in self.choices)
        if self.length:
            base += f" ({self.length} items)"
        bounds = [
            f"{op} {_num(v)}"
            for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if v is not None
        ]
        if bounds:
            base += " " + " and ".join(bounds)
        return base + (" or none" if self.optional else "")

    def default_text(self) -> str:
        text = self.format(self.default)
        if self.config:
            text += f" (or the model config's {self.config})"
        return text

    def format(self, value: Any) -> str:
        """Text that `parse` turns back into `value` (the TUI shows parameters this way)."""
        if value is None:
            return "none"
        if isinstance(value, bool):
            return "true" if value else "false"
        if self.kind == "int_groups" and isinstance(value, (list, tuple)):
            return ";".join(",".join(str(v) for v in group) for group in value) or "[]"
        if isinstance(value, (list, tuple)):
            return ",".join(self._item_text(v) for v in value) if value else "[]"
        if isinstance(value, dict):
            return json.dumps(value, separators=(",", ":"))
        if isinstance(value, float):
            return _num(value)
        return str(value)

    @staticmethod
    def _item_text(value: Any) -> str:
        return _num(value) if isinstance(value, float) else str(value)

    # --- parsing and checking ---------------------------------------------------------------

    def parse(self, text: str) -> Any:
        """The value a piece of text means for this parameter (CLI flag and TUI field alike)."""
        raw = str(text).strip()
        if self.optional and raw.lower() in _NONE:
            return None
        if not raw and self.kind != "str":
            raise self._error(text, "needs a value")
        if self.kind == "bool":
            low = raw.lower()
            if low in _TRUE or low in _FALSE:
                return self.check(low in _TRUE)
            raise self._error(text, "expected true or false")
        if self.kind == "int":
            return self.check(_parse_number(raw, self._error(text, "expected an integer")))
        if self.kind == "float":
            return self.check(_parse_number(raw, self._error(text, "expected a number")))
        if self.kind == "str":
            return self.check(raw)
        if self.kind == "json":
            try:
                return self.check(json.loads(raw))
            except ValueError:
                raise self._error(text, 'expected a JSON object such as {"steps": 500}') from None
        if self.kind == "int_groups":
            error = self._error(text, "expected groups such as 1,2;3,4")
            if raw.startswith("["):
                return self.check(_split_list(raw, error))
            return self.check([_split_list(g, error) for g in raw.split(";")])
        return self.check(_split_list(raw, self._error(text, "expected a list such as 1,2,3")))

    def check(self, value: Any) -> Any:
        """`value` converted to this parameter's type and checked against its range; text is
        parsed, so a value from a JSON file, the Python API or a form field is treated alike."""
        if value is None:
            if self.optional:
                return None
            raise self._error(value, "needs a value (none is not allowed)")
        if isinstance(value, str) and self.kind != "str":
            return self.parse(value)
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise self._error(value, "expected true or false")
        if self.kind in ("int", "float"):
            return self._bounded(self._scalar(value, self.kind))
        if self.kind == "str":
            if not isinstance(value, str):
                raise self._error(value, "expected text")
            if self.choices and value not in self.choices:
                raise self._error(value, f"expected one of {', '.join(map(str, self.choices))}")
            return value
        if self.kind == "json":
            if not isinstance(value, dict):
                raise self._error(value, "expected a JSON object")
            return value
        if self.kind == "int_groups":
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(g, (list, tuple)) or hasattr(g, "tolist") for g in value
            ):
                raise self._error(value, "expected a list of groups")
            return [self._list(g, "int") for g in value]
        return self._list(value)

    def _scalar(self, value: Any, kind: str) -> int | float:
        if hasattr(value, "item") and not isinstance(value, (list, tuple)):
            value = value.item()  # numpy scalars
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._error(
                value, "expected an integer" if kind == "int" else "expected a number"
            )
        if kind == "float":
            if not math.isfinite(value):
                raise self._error(value, "expected a finite number")
            return float(value)
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise self._error(value, "expected an integer")
        return int(value)

    def _bounded(self, value: int | float) -> int | float:
        checks = (
            (self.ge, lambda b: value >= b, ">="),
            (self.gt, lambda b: value > b, ">"),
            (self.le, lambda b: value <= b, "<="),
            (self.lt, lambda b: value < b, "<"),
        )
        for bound, ok, op in checks:
            if bound is not None and not ok(bound):
                raise self._error(value, f"must be {op} {_num(bound)}")
        if self.choices and value not in self.choices:
            raise self._error(value, f"expected one of {', '.join(map(str, self.choices))}")
        return value

    def _list(self, value: Any, kind: str | None = None) -> list:
        if hasattr(value, "tolist"):
            value = value.tolist()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise self._error(value, "expected a list")
        kind = kind or ("int" if self.kind == "int_list" else "float")
        items = [self._bounded(self._scalar(v, kind)) for v in value]
        if self.length is not None and len(items) != self.length:
            raise self._error(value, f"expected exactly {self.length} items, got {len(items)}")
        return items

    def _error(self, value: Any, why: str) -> ParamError:
        shown = value if isinstance(value, str) else json.dumps(_plain(value))
        detail = f"{why}, got {shown!r}" if shown != "" else why
        return ParamError(f"{self.flag}: {detail}", name=self.name, detail=detail)


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return f"{value:.1f}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return (
        value if isinstance(value, (int, float, str, bool, dict)) or value is None else str(value)
    )


def _parse_number(raw: str, error: ParamError) -> int | float:
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        raise error from None


def _split_list(raw: str, error: ParamError) -> list:
    if raw.startswith("["):
        try:
            value = json.loads(raw)
        except ValueError:
            raise error from None
        if not isinstance(value, list):
            raise error
        return value
    parts = [p for p in re.split(r"[,\s]+", raw) if p]
    return [_parse_number(p, error) for p in parts]


# --- deriving a schema from a signature --------------------------------------------------------------


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) == 1:
            return args[0], optional
        raise TypeError(f"unsupported union {tp!r}")
    return tp, False


def _kind_of(tp: Any) -> tuple[str, tuple | None, int | None]:
    """(kind, choices from Literal, fixed length from tuple[int, int])."""
    if tp is bool:
        return "bool", None, None
    if tp is int:
        return "int", None, None
    if tp is float:
        return "float", None, None
    if tp is str:
        return "str", None, None
    if tp is dict or typing.get_origin(tp) is dict:
        return "json", None, None
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        return _kind_of(type(choices[0]))[0], tuple(choices), None
    if origin in (list, tuple, Sequence):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        item = args[0] if args else float
        length = len(args) if origin is tuple and Ellipsis not in typing.get_args(tp) else None
        if typing.get_origin(item) in (list, tuple, Sequence):
            return "int_groups", None, length
        if item is int:
            return "int_list", None, length
        if item is float:
            return "float_list", None, length
    raise TypeError(f"unsupported parameter type {tp!r}")


def params_of(fn: Callable) -> list[Param]:
    """The user-facing parameters of `fn`, in signature order (see the module docstring)."""
    hints = typing.get_type_hints(fn, include_extras=True)
    out: list[Param] = []
    for name, p in inspect.signature(fn).parameters.items():
        hint = hints.get(name)
        if name in INJECTED or typing.get_origin(hint) is not Annotated:
            continue
        base, *extras = typing.get_args(hint)
        meta = next((e for e in extras if isinstance(e, P)), None)
        if meta is None:
            continue
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"{fn.__qualname__}: parameter {name} needs a default")
        tp, optional = _unwrap_optional(base)
        kind, choices, length = _kind_of(tp)
        default = p.default
        if isinstance(default, tuple):
            default = list(default)  # schemas hold JSON-like values
        out.append(
            Param(
                name=name,
                kind=kind,
                default=default,
                help=meta.help,
                optional=optional or default is None,
                ge=meta.ge,
                gt=meta.gt,
                le=meta.le,
                lt=meta.lt,
                choices=meta.choices or choices,
                config=meta.config,
                length=meta.length or length,
            )
        )
    return out


@dataclass(frozen=True)
class Schema:
    """The parameters of one analysis (or figure), with parsing and resolution of user values."""

    owner: str
    params: tuple[Param, ...] = ()
    _index: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({p.name: p for p in self.params})

    @classmethod
    def from_function(cls, owner: str, fn: Callable) -> Schema:
        return cls(owner, tuple(params_of(fn)))

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> Param:
        return self._index[name]

    def __iter__(self):
        return iter(self.params)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def param(self, name: str) -> Param:
        key = name.replace("-", "_")
        if key not in self._index:
            known = ", ".join(p.flag for p in self.params) or "none"
            raise ParamError(
                f"{self.owner}: unknown parameter --{name.replace('_', '-')}; known: {known}"
            )
        return self._index[key]

    def check(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """User values (text or Python) checked and converted; unknown names are an error."""
        return {self.param(k).name: self.param(k).check(v) for k, v in values.items()}

    def resolve(
        self, values: Mapping[str, Any] | None = None, config: Any = None
    ) -> dict[str, Any]:
        """Every parameter's value: the user's, else the model config's (for parameters tied to a
        config key), else the default. This is what runs, what is cached and what is recorded."""
        given = self.check(values or {})
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in given:
                out[p.name] = given[p.name]
            elif p.config and config is not None and getattr(config, p.config, None) is not None:
                out[p.name] = p.check(getattr(config, p.config))
            else:
                out[p.name] = p.default
        return out

    def parse_assignments(self, text: str) -> dict[str, Any]:
        """`steps=200 kick_units=1,2,3 mus="[0, 1]"` (the TUI's parameter line) into values."""
        try:
            items = shlex.split(text)
        except ValueError as exc:
            raise ParamError(f"{self.owner}: cannot read the parameters ({exc})") from None
        out: dict[str, Any] = {}
        for item in items:
            name, eq, value = item.partition("=")
            if not eq or not name:
                raise ParamError(f"{self.owner}: expected name=value, got {item!r}")
            param = self.param(name.strip())
            out[param.name] = param.parse(value)
        return out

    def parse_flags(self, tokens: Iterable[str]) -> dict[str, Any]:
        """`--name value` / `--name=value` tokens (the CLI's) into values."""
        tokens = list(tokens)
        out: dict[str, Any] = {}
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if not tok.startswith("--") or tok == "--":
                raise ParamError(f"{self.owner}: expected --name value, got {tok!r}")
            name, eq, value = tok[2:].partition("=")
            param = self.param(name)
            if not eq:
                if i + 1 >= len(tokens):
                    raise ParamError(f"{self.owner}: {param.flag} needs a value")
                value, i = tokens[i + 1], i + 1
            out[param.name] = param.parse(value)
            i += 1
        return out

    def format_values(self, values: Mapping[str, Any]) -> str:
        """The parameter line for `values` (inverse of parse_assignments)."""
        parts = []
        for name, value in values.items():
            text = self[name].format(value)
            parts.append(f"{name}={shlex.quote(text)}")
        return " ".join(parts)


def schema_of(owner: str, fn: Callable) -> Schema:
    return Schema.from_function(owner, fn)


# Parameters many analyses share, written once.
NoiseStd = Annotated[float, P("std of the input noise", ge=0, config="noise_std")]
Seed = Annotated[int, P("seed of the analysis' random draws", ge=0)]
Warmup = Annotated[int, P("steps discarded first (from h = 0)", ge=0)]
PcaSteps = Annotated[int, P("driven steps of the PC basis", ge=2)]
Components = Annotated[int, P("principal components of the projection", ge=1)]
