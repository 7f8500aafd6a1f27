"""Layered configuration: `config/default.yaml`, then `--config` files, then env vars.

Every layer is checked on its own for unknown keys (so the error names the file that
has the typo); the merged result is then checked for types and ranges, and turned into
the typed model (`service.settings.model`) by one generic conversion. Lists are
replaced, not merged: a layer that sets `validators` sets the whole list.
Env vars: `CUSTOMERS__SECTION__KEY=value`, the value parsed as YAML
(`CUSTOMERS__SERVER__PORT=9000`, `CUSTOMERS__CEP__PROVIDERS='[offline]'`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validates_schema

from service.settings.checks import check_settings
from service.settings.model import Check, Settings, SettingsError, Workers

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
# A wheel carries copies of config/ and policies/ in service/_data (pyproject's force-include);
# a source checkout (editable install, `make run`) reads the repository's top-level folders.
DATA_DIR = _PACKAGE_DIR / "_data" if (_PACKAGE_DIR / "_data").is_dir() else _PACKAGE_DIR.parent
DEFAULT_CONFIG = DATA_DIR / "config" / "default.yaml"
DEFAULT_POLICIES = DATA_DIR / "policies"
ENV_PREFIX = "CUSTOMERS__"
_T = typing.TypeVar("_T")


# --- schemas: generated from the dataclasses; unknown keys raise, so typos never pass ---


class _Section(Schema):
    class Meta:
        unknown = RAISE


class _Entry(_Section):
    """An item of a list (`validators`): lists are never merged, so every layer that sets
    one must give complete items, even when a layer is checked with partial=True."""

    required_names: typing.ClassVar[tuple[str, ...]] = ()

    @validates_schema
    def _complete(self, data: dict[str, Any], **_: Any) -> None:
        for name in self.required_names:
            if name not in data:
                raise ValidationError("Missing data for required field.", name)


class _Workers(fields.Integer):
    """A number of processes, or `auto`: one per core."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if value == "auto":
            return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("must be a whole number of processes or auto")
        return int(super()._deserialize(value, attr, data, **kwargs))


_SCALARS: dict[Any, type[fields.Field[Any]]] = {
    bool: fields.Boolean,
    int: fields.Integer,
    float: fields.Float,
    str: fields.String,
    Workers: _Workers,
}


def _field(hint: Any, check: Check, *, item: bool = False) -> fields.Field[Any]:
    """The marshmallow field of a settings field: its type, and its `Check` (`each` for
    the items of a list)."""
    if typing.get_origin(hint) is Annotated:
        hint, check = typing.get_args(hint)[0], typing.get_args(hint)[1]
    validators = ([check.each] if check.each else []) if item else list(check.checks)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    nullable = check.nullable or len(args) < len(typing.get_args(hint))
    if len(args) < len(typing.get_args(hint)):
        hint = args[0]
    options: dict[str, Any] = {"validate": validators, "allow_none": nullable}
    origin = typing.get_origin(hint)
    if origin is tuple:
        return fields.List(_field(typing.get_args(hint)[0], check, item=True), **options)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return fields.Nested(section_schema(hint, entry=item), **options)
    if hint is str and check.url:
        return fields.Url(require_tld=False, **options)
    if origin is not None and issubclass(origin, Mapping):
        return fields.Dict(keys=fields.String(), **options)
    return _SCALARS[hint](**options)


@functools.cache
def section_schema(cls: type, *, entry: bool = False) -> type[Schema]:
    """The schema of the dataclass `cls` (a section, or `entry`: an item of a list)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    attrs: dict[str, Any] = {
        f.name: _field(hints[f.name], Check())
        for f in dataclasses.fields(cls)
        if f.metadata.get("from_config", True)
    }
    if entry:
        attrs["required_names"] = tuple(
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
    return type(f"{cls.__name__}Schema", (_Entry if entry else _Section,), attrs)


def _settings_schema() -> Schema:
    return section_schema(Settings)()


# --- loading ---


def _flatten_errors(messages: Any, prefix: str = "") -> list[str]:
    if isinstance(messages, Mapping):
        out: list[str] = []
        for key, value in messages.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out.extend(_flatten_errors(value, path))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{prefix}: {' '.join(messages)}"]
    return [f"{prefix}: {messages}"]


def _check(layer: Mapping[str, Any], source: str) -> None:
    try:
        _settings_schema().load(layer, partial=True)
    except ValidationError as exc:
        details = "; ".join(_flatten_errors(exc.messages))
        raise SettingsError(f"{source}: invalid configuration: {details}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read configuration file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: the top level must be a mapping of sections")
    return data


def _env_layer(environ: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    layers = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(keys):
            raise SettingsError(f"env {name}: empty key segment")
        try:
            value: Any = yaml.safe_load(environ[name])
        except yaml.YAMLError as exc:
            raise SettingsError(f"env {name}: value is not valid YAML: {exc}") from None
        for key in reversed(keys):
            value = {key: value}
        layers.append((f"env {name}", value))
    return layers


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_settings(
    config_files: Sequence[str | Path] = (),
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings: default.yaml < each config file < env vars < overrides.

    `overrides` is for code (the CLI's --host/--port, tests); it is checked like a layer.
    """
    layers: list[tuple[str, dict[str, Any]]] = [(str(DEFAULT_CONFIG), _read_yaml(DEFAULT_CONFIG))]
    layers += [(str(path), _read_yaml(Path(path))) for path in config_files]
    layers += _env_layer(os.environ if environ is None else environ)
    if overrides:
        layers.append(("overrides", dict(overrides)))

    merged: dict[str, Any] = {}
    for source, layer in layers:
        _check(layer, source)
        merged = deep_merge(merged, layer)
    try:
        checked = _settings_schema().load(merged)
    except ValidationError as exc:
        raise SettingsError(f"configuration: {'; '.join(_flatten_errors(exc.messages))}") from None
    if checked["authz"].get("policies_dir") is None:
        checked["authz"]["policies_dir"] = str(DEFAULT_POLICIES)
    settings = _build(Settings, {**checked, "base_dir": Path.cwd()}, "")
    check_settings(settings, os.environ if environ is None else environ)
    return settings


def _build(cls: type[_T], values: Mapping[str, Any], where: str) -> _T:
    """The dataclass `cls` from checked values: nested sections become their dataclasses,
    lists become tuples. Every field without a default must be there (default.yaml holds
    every key of every section)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = f"{where}{field.name}"
        if field.name in values:
            kwargs[field.name] = _convert(hints[field.name], values[field.name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise SettingsError(f"configuration: {key}: missing (every key is in default.yaml)")
    return cls(**kwargs)


def _convert(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _build(hint, value, f"{where}.")
    if typing.get_origin(hint) is tuple:
        item_hint = typing.get_args(hint)[0]
        return tuple(_convert(item_hint, item, f"{where}[{i}]") for i, item in enumerate(value))
    return value
