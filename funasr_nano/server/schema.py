"""Request fields derived from the option dataclasses (:mod:`funasr_nano.options`), as the command
line's flags are (:mod:`funasr_nano.cli.options`): one field per dataclass field, nested dataclasses
flattened (``decoding.max_new_tokens`` is the field ``max_new_tokens``), the description from the
class docstring (:func:`funasr_nano.option_docs.field_docs`), the default from the dataclass, the value
checked by the dataclass itself.

The same fields are read from a multipart form (``/v1/audio/transcriptions``: every value a string,
list fields repeated, as ``hotwords`` or ``hotwords[]``) and from a JSON object (the realtime session's
``transcription`` settings: typed values). The OpenAI fields that are not option fields (``file``,
``model``, ``prompt``, ``response_format``, ``stream``, ...) are handled by the routes.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any, Iterable, Mapping

from ..errors import InvalidOptionError, UnsupportedLanguageError
from ..option_docs import CHOICES, field_docs
from .errors import APIError, param_in_message

# Fields the server decides, never a request: how many of a request's segments go through the LLM together;
# a hotwords file (a path on the server's disk, which a client must not name).
SERVER_FIELDS = frozenset({"TranscribeOptions.batch_size", "TranscribeOptions.hotwords_file"})


@dataclasses.dataclass(frozen=True)
class Field:
    """One request field.

    Attributes:
        name: the field's name in a request (the dataclass field's name).
        path: where it goes: ``("decoding", "max_new_tokens")``.
        kind: ``int``, ``float``, ``str``, ``bool``, ``optional_bool`` (true/false/auto) or ``strings``.
        optional: ``None`` is a valid value (``X | None``).
        default: the dataclass's default.
        description: from the class docstring.
        choices: allowed values of a string field.
    """

    name: str
    path: tuple[str, ...]
    kind: str
    optional: bool
    default: Any
    description: str
    choices: tuple[str, ...] | None = None


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return field.default


def _kind(hint: Any) -> tuple[str, bool]:
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    optional = type(None) in typing.get_args(hint)
    if hint is bool:
        return "bool", False
    if optional and args == [bool]:
        return "optional_bool", True
    if hint == tuple[str, ...]:
        return "strings", False
    scalar = args[0] if optional and len(args) == 1 else hint
    if scalar in (int, float, str):
        return scalar.__name__, optional
    raise TypeError(f"no request form for a field of type {hint}")


def option_fields(cls: type, prefix: tuple[str, ...] = (), base: Any = None) -> list[Field]:
    """The request fields of the option dataclass ``cls`` (nested dataclasses flattened), except
    :data:`SERVER_FIELDS`. A nested dataclass's defaults are those of its outer field's default
    (``TranslationOptions.decoding`` caps ``max_new_tokens`` at 256, not ``DecodingOptions``' 512); ``base``:
    that default instance.

    Raises:
        TypeError: a field type without a request form, or two fields with one name (programming errors).
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    fields: list[Field] = []
    for field in dataclasses.fields(cls):
        key = f"{cls.__name__}.{field.name}"
        if key in SERVER_FIELDS:
            continue
        hint = hints[field.name]
        default = _default(field) if base is None else getattr(base, field.name)
        if dataclasses.is_dataclass(hint):
            fields.extend(option_fields(hint, prefix + (field.name,), default))
            continue
        kind, optional = _kind(hint)
        fields.append(Field(field.name, prefix + (field.name,), kind, optional, default,
                            docs.get(field.name, ""), CHOICES.get(key)))
    names = [f.name for f in fields]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TypeError(f"{cls.__name__}: request fields with the same name: {duplicates}")
    return fields


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def parse_value(field: Field, raw: Any) -> Any:
    """A field's value from a form string (or list of strings) or a JSON value.

    Raises:
        APIError: 400 naming the field, for a value of the wrong type.
    """
    def bad(expected: str) -> APIError:
        shown = raw[0] if isinstance(raw, list) and len(raw) == 1 else raw
        return APIError(400, f"{field.name} must be {expected}, got {shown!r}", param=field.name, code="invalid_value")

    values = raw if isinstance(raw, list) else [raw]
    if field.kind == "strings":
        out = []
        for value in values:
            if not isinstance(value, str):
                raise bad("a string or a list of strings")
            out.append(value)
        return tuple(out)
    if len(values) != 1:
        raise bad("a single value")
    value = values[0]
    empty = isinstance(value, str) and (value.strip() == "" or (field.kind != "str"
                                                                and value.strip().lower() in ("null", "none")))
    if value is None or (empty and field.optional):
        if field.optional:
            return None
        raise bad(f"a {field.kind}")
    if field.kind in ("bool", "optional_bool"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
            if field.kind == "optional_bool" and word == "auto":
                return None
        raise bad("true or false" + (" or auto" if field.kind == "optional_bool" else ""))
    if field.kind == "int":
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            return int(value)
        raise bad("an integer")
    if field.kind == "float":
        if isinstance(value, bool):
            raise bad("a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise bad("a number")
    if not isinstance(value, str):
        raise bad("a string")
    if field.choices is not None and value not in field.choices:
        raise bad(f"one of {', '.join(field.choices)}")
    return value


def build_options(cls: type, values: Mapping[str, Any], *, base: Any = None) -> Any:
    """The option dataclass ``cls`` from request ``values`` (``{field name: raw value}``, names from
    :func:`option_fields`); absent fields keep ``base``'s value (default: the dataclass's defaults).

    Raises:
        APIError: 400 naming the field, for a bad value (the dataclass's own check, or a wrong type).
    """
    fields = {field.name: field for field in option_fields(cls)}
    nested: dict[tuple[str, ...], dict[str, Any]] = {}
    for name, raw in values.items():
        field = fields[name]
        nested.setdefault(field.path[:-1], {})[field.path[-1]] = parse_value(field, raw)
    try:
        return _build(cls, nested, (), base if base is not None else cls())
    except (InvalidOptionError, UnsupportedLanguageError) as error:
        param = param_in_message(str(error), list(fields))
        if isinstance(error, UnsupportedLanguageError):
            param = param or "language"
        raise APIError(400, str(error), param=param,
                       code="unsupported_language" if isinstance(error, UnsupportedLanguageError) else "invalid_value")


def _build(cls: type, nested: Mapping[tuple[str, ...], dict[str, Any]], path: tuple[str, ...], base: Any) -> Any:
    hints = typing.get_type_hints(cls)
    changes = dict(nested.get(path, {}))
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            inner = path + (field.name,)
            if any(key[:len(inner)] == inner for key in nested):
                changes[field.name] = _build(hints[field.name], nested, inner, getattr(base, field.name))
    return dataclasses.replace(base, **changes) if changes else base


def split_fields(values: Mapping[str, Any], cls: type) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` split into ``(fields of cls, the rest)``."""
    names = {field.name for field in option_fields(cls)}
    own = {name: value for name, value in values.items() if name in names}
    return own, {name: value for name, value in values.items() if name not in names}


def openapi_properties(cls: type, exclude: Iterable[str] = ()) -> dict[str, dict]:
    """JSON-schema properties of the request fields of ``cls`` (for the OpenAPI document)."""
    types = {"int": "integer", "float": "number", "str": "string", "bool": "boolean"}
    properties = {}
    for field in option_fields(cls):
        if field.name in exclude:
            continue
        if field.kind == "strings":
            schema: dict = {"type": "array", "items": {"type": "string"}}
        elif field.kind == "optional_bool":
            schema = {"type": "string", "enum": ["true", "false", "auto"]}
        else:
            schema = {"type": types[field.kind]}
            if field.choices:
                schema["enum"] = list(field.choices)
        if field.default not in (None, ()):
            schema["default"] = field.default
        schema["description"] = field.description
        properties[field.name] = schema
    return properties
