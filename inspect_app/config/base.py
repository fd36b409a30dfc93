"""The base of every configuration model, the YAML reader, and the one-line message for a refused value.

Every recipe, pipeline file and policy is a frozen pydantic model that refuses unknown keys. A value pydantic refuses
becomes one ``ConfigError`` line that names the key path, the bad value and what is allowed, so the CLI can print it
as it is.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from inspect_app.errors import ConfigError

_KINDS: dict[Any, str] = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}
_TYPE_ERRORS = {
    "int_parsing", "int_type", "int_from_float", "float_parsing", "float_type", "bool_parsing", "bool_type",
    "string_type", "greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number",
}


def choice(*allowed: str) -> AfterValidator:
    """Limits a text field to ``allowed`` (``field: Annotated[str, choice("a", "b")]``); the refusal lists them
    (``'rmsprop' is not one of adamw, adam, sgd``)."""

    def check(value: str) -> str:
        if value not in allowed:
            raise PydanticCustomError("choice", "is not one of {allowed}", {"allowed": ", ".join(allowed)})
        return value

    return AfterValidator(check)


class ConfigModel(BaseModel):
    """A frozen configuration: unknown keys refused, YAML 1.1 strings such as ``"1e-3"`` read as numbers.

    ``what`` names one key of this model in messages ("training option", "key", "section"); ``secret_keys`` are
    keys whose values never appear in a message (URLs and commands may carry credentials).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)
    what: ClassVar[str] = "option"
    secret_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, /, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(validation_message(exc, type(self))) from exc

    # Marks this __init__ as pydantic's own (as RootModel does), so nested models are validated in one pass and an
    # error deep inside keeps its full key path instead of surfacing from the inner model's __init__.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def from_dict(cls, values: Any, where: str = "") -> Self:
        """Validate a mapping (a YAML file's content); ``where`` (such as the file) starts the message."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(validation_message(exc, cls, where)) from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON/YAML."""
        return self.model_dump()

    def with_overrides(self, **overrides: Any) -> Self:
        """Copy with the non-``None`` overrides applied, validated like the original (CLI flags over a file)."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return type(self)(**values)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type inside ``X | None`` / ``Annotated[X, ...]``, whether ``None`` is allowed)."""
    nullable = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            nullable = nullable or len(args) < len(get_args(annotation))
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return annotation, nullable
        else:
            return annotation, nullable


def _walk(model: type[BaseModel], loc: Sequence[int | str]) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model that holds the last key of ``loc`` and that key's field (``None`` where the path leaves models)."""
    current: type[BaseModel] | None = model
    field: FieldInfo | None = None
    for index, part in enumerate(loc):
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            return (current, None) if index == len(loc) - 1 else (None, field)
        field = current.model_fields[part]
        if index < len(loc) - 1:
            inner, _ = _unwrap(field.annotation)
            current = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
    return current, field


def _allowed(field: FieldInfo | None) -> str:
    """What a field accepts, in words: ``a number in (0, 1)``, ``a whole number >= 1 or null``."""
    if field is None:
        return "a valid value"
    kind, nullable = _unwrap(field.annotation)
    if get_origin(kind) in (tuple, list):
        inner = _KINDS.get(get_args(kind)[0], "values") if get_args(kind) else "values"
        text = f"a list of {inner.removeprefix('a ')}s" if inner != "values" else "a list"
    else:
        text = _KINDS.get(kind, "a valid value")
    low = next((m for m in field.metadata if isinstance(m, annotated_types.Gt | annotated_types.Ge)), None)
    high = next((m for m in field.metadata if isinstance(m, annotated_types.Lt | annotated_types.Le)), None)
    if low is not None and high is not None:
        left = "(" if isinstance(low, annotated_types.Gt) else "["
        right = ")" if isinstance(high, annotated_types.Lt) else "]"
        lo = low.gt if isinstance(low, annotated_types.Gt) else low.ge
        hi = high.lt if isinstance(high, annotated_types.Lt) else high.le
        text += f" in {left}{lo:g}, {hi:g}{right}"
    elif low is not None:
        text += f" > {low.gt:g}" if isinstance(low, annotated_types.Gt) else f" >= {low.ge:g}"
    elif high is not None:
        text += f" < {high.lt:g}" if isinstance(high, annotated_types.Lt) else f" <= {high.le:g}"
    return text + (" or null" if nullable else "")


def validation_message(exc: ValidationError, model: type[BaseModel], where: str = "") -> str:
    """One line for everything pydantic refused: each bad key path with its value and what is allowed.

    Args:
        exc: the refusal.
        model: the model that was validated (to list allowed keys and describe allowed values).
        where: prefix such as ``recipe file 'r.yaml'``.
    """
    unknown: dict[tuple[int | str, ...], list[str]] = {}
    parts: list[str] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden":
            unknown.setdefault(loc[:-1], []).append(str(loc[-1]))
            continue
        element = bool(loc) and isinstance(loc[-1], int)  # one item of a list field: describe the item
        holder, field = _walk(model, loc[:-1] if element else loc)
        path = ".".join(str(p) for p in loc)
        secret = holder is not None and bool(loc) and loc[-1] in getattr(holder, "secret_keys", ())
        value = "(hidden)" if secret else repr(error.get("input"))
        kind = error["type"]
        if kind == "missing":
            parts.append(f"{path} is required")
        elif kind in _TYPE_ERRORS:
            verb = "is not" if kind.endswith(("_parsing", "_type", "_from_float")) else "must be"
            allowed = _KINDS.get(next(iter(get_args(_unwrap(field.annotation)[0])), None), "a valid value") if (
                element and field is not None) else _allowed(field)
            parts.append(f"{path} {value} {verb} {allowed}")
        elif kind == "too_short":
            parts.append(f"{path} {value} must hold at least {error.get('ctx', {}).get('min_length', 1)} item(s)")
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            shown = f"{path} " if path else ""
            parts.append(f"{shown}must be a mapping, got {type(error.get('input')).__name__}")
        else:
            message = error["msg"].removeprefix("Value error, ")
            parts.append(f"{path} {value} {message}" if path else message)
    for parent, keys in unknown.items():
        holder, _ = _walk(model, (*parent, "")) if parent else (model, None)
        allowed_keys = sorted(holder.model_fields) if holder is not None else []
        text = f"unknown {getattr(holder, 'what', 'option')}(s) {sorted(keys)}"
        if parent:
            text += f" in {'.'.join(map(str, parent))!r}"
        close = difflib.get_close_matches(keys[0], allowed_keys, n=1) if len(keys) == 1 else []
        if close:
            text += f" (did you mean {close[0]!r}?)"
        parts.insert(0, text + (f"; allowed: {allowed_keys}" if allowed_keys else ""))
    return (f"{where}: " if where else "") + "; ".join(parts)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, naming the file in every error."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {str(path)!r} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"config file {str(path)!r} cannot be read: {reason}") from exc
    except yaml.YAMLError as exc:
        # One line: PyYAML's message spans several (problem, then the marked position).
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {' '.join(str(exc).split())}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping, got {type(data).__name__}")
    return data
