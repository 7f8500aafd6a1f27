"""Layered configuration: `config/default.yaml`, then `--config` files, then env vars.

Every layer is checked on its own for unknown keys (so the error names the file that
has the typo); the merged result is then checked for types and ranges, and turned into
the typed model (`service.settings.model`) by one generic conversion. Lists are
replaced, not merged: a layer that sets `validators` sets the whole list.
Env vars: `CUSTOMERS__SECTION__KEY=value`, the value parsed as YAML
(`CUSTOMERS__SERVER__PORT=9000`, `CUSTOMERS__CEP__PROVIDERS='[offline]'`).
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import ipaddress
import os
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from service.settings.model import Settings, SettingsError, WebhookSettings
from service.storage_url import known_prefixes, scheme_of

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
# A wheel carries copies of config/ and policies/ in service/_data (pyproject's force-include);
# a source checkout (editable install, `make run`) reads the repository's top-level folders.
DATA_DIR = _PACKAGE_DIR / "_data" if (_PACKAGE_DIR / "_data").is_dir() else _PACKAGE_DIR.parent
DEFAULT_CONFIG = DATA_DIR / "config" / "default.yaml"
DEFAULT_POLICIES = DATA_DIR / "policies"
ENV_PREFIX = "CUSTOMERS__"
_T = typing.TypeVar("_T")


# --- schemas: one per section; unknown keys raise, so typos never pass silently ---


class _Section(Schema):
    class Meta:
        unknown = RAISE


class _Workers(fields.Integer):
    """A number of processes, or `auto`: one per core."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if value == "auto":
            return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("must be a whole number of processes or auto")
        return int(super()._deserialize(value, attr, data, **kwargs))


class _ServerSchema(_Section):
    host = fields.String()
    port = fields.Integer(validate=validate.Range(0, 65535))
    max_body_bytes = fields.Integer(validate=validate.Range(min=1024))
    idle_timeout_s = fields.Float(validate=validate.Range(min=0.1, max=3600))
    workers = _Workers(validate=validate.Range(1, 256))
    shutdown_timeout_s = fields.Float(validate=validate.Range(min=0, max=3600))


def _storage_scheme(url: str) -> None:
    if scheme_of(url) is None:
        raise ValidationError(f"must start with {known_prefixes()}")


class _StorageSchema(_Section):
    url = fields.String(validate=_storage_scheme)
    database = fields.String(validate=validate.Length(min=1))


class _PiiSchema(_Section):
    key_file = fields.String(validate=validate.Length(min=1))
    key_env = fields.String(validate=validate.Length(min=1))
    create_key_file = fields.Boolean()


class _HttpProviderSchema(_Section):
    base_url = fields.Url(require_tld=False)
    timeout_s = fields.Float(validate=validate.Range(min=0.01, max=60))


class _OfflineSchema(_Section):
    db_path = fields.String(allow_none=True)


class _CepCacheSchema(_Section):
    url = fields.String(validate=validate.Regexp(r"^(memory|redis)://"))
    ttl_found_s = fields.Integer(validate=validate.Range(min=0))
    ttl_missing_s = fields.Integer(validate=validate.Range(min=0))


class _CepSchema(_Section):
    providers = fields.List(fields.String(), validate=validate.Length(min=1))
    viacep = fields.Nested(_HttpProviderSchema)
    brasilapi = fields.Nested(_HttpProviderSchema)
    offline = fields.Nested(_OfflineSchema)
    cache = fields.Nested(_CepCacheSchema)


class _LocalIssuerSchema(_Section):
    enabled = fields.Boolean()
    key_file = fields.String()
    allow_public = fields.Boolean()


_ALLOWED_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


class _AuthSchema(_Section):
    issuer = fields.String()
    audience = fields.String()
    jwks_url = fields.String()
    # Asymmetric algorithms only: `none` and HS* (shared secrets) are never accepted.
    algorithms = fields.List(
        fields.String(validate=validate.OneOf(_ALLOWED_ALGORITHMS)),
        validate=validate.Length(min=1),
    )
    roles_claim = fields.String()
    leeway_s = fields.Integer(validate=validate.Range(0, 300))
    jwks_refresh_cooldown_s = fields.Float(validate=validate.Range(min=0))
    max_token_lifetime_s = fields.Integer(validate=validate.Range(min=0))
    local_issuer = fields.Nested(_LocalIssuerSchema)


class _AuthzSchema(_Section):
    engine = fields.String(validate=validate.OneOf(("embedded", "opa")))
    policies_dir = fields.String(allow_none=True)
    opa_url = fields.Url(require_tld=False)
    timeout_s = fields.Float(validate=validate.Range(min=0.01, max=30))


def _check_network(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValidationError(f"not an IP address or network: {value!r}") from None


class _RateLimitSchema(_Section):
    enabled = fields.Boolean()
    rate_per_s = fields.Float(validate=validate.Range(min=0.001, max=1e6))
    burst = fields.Integer(validate=validate.Range(min=1, max=10**6))
    url = fields.String(
        validate=validate.Regexp(
            r"^(memory://$|rediss?://)", error="must be memory:// or redis://host:port/db"
        )
    )
    max_buckets = fields.Integer(validate=validate.Range(min=1))
    trusted_proxies = fields.List(fields.String(validate=_check_network))


class _BreakerSchema(_Section):
    failures = fields.Integer(validate=validate.Range(min=1, max=1000))
    cooldown_s = fields.Float(validate=validate.Range(min=0, max=3600))


class _LoggingSchema(_Section):
    format = fields.String(validate=validate.OneOf(["auto", "json", "text"]))


class _RetentionSchema(_Section):
    closed_days = fields.Integer(validate=validate.Range(min=0, max=100 * 366))
    sweep_interval_s = fields.Float(validate=validate.Range(min=1, max=7 * 86400))


class _AuditSchema(_Section):
    reads = fields.String(validate=validate.OneOf(["pii", "all", "none"]))


class _ValidatorEntrySchema(_Section):
    use = fields.String(required=True, validate=validate.Length(min=1))
    options = fields.Dict(keys=fields.String())
    enabled = fields.Boolean()

    @validates_schema
    def _use_is_given(self, data: dict[str, Any], **_: Any) -> None:
        # Required even when a layer is checked with partial=True: lists are never merged,
        # so every layer that sets `validators` must give complete entries.
        if "use" not in data:
            raise ValidationError("Missing data for required field.", "use")


_EVENT_TYPES = (
    "customer.created",
    "customer.updated",
    "customer.blocked",
    "customer.unblocked",
    "customer.closed",
    "customer.reopened",
    "customer.anonymized",
)


class _WebhookSchema(_Section):
    url = fields.Url(required=True, require_tld=False, schemes={"http", "https"})
    name = fields.String(
        validate=validate.Regexp(r"^[A-Za-z0-9_.:-]{1,64}$", error="letters, digits, _.:- only")
    )
    secret_env = fields.String(validate=validate.Length(min=1))
    secret_file = fields.String(validate=validate.Length(min=1))
    types = fields.List(
        fields.String(validate=validate.OneOf(_EVENT_TYPES)),
        required=True,
        validate=validate.Length(min=1),
    )

    @validates_schema
    def _one_secret(self, data: dict[str, Any], **_: Any) -> None:
        if ("secret_env" in data) == ("secret_file" in data):
            raise ValidationError("give exactly one of secret_env and secret_file", "secret_env")
        for key in ("url", "types"):  # lists are replaced whole: every entry is complete
            if key not in data:
                raise ValidationError("Missing data for required field.", key)


class _EventsSchema(_Section):
    retention_days = fields.Integer(validate=validate.Range(min=1, max=3650))
    webhooks = fields.List(fields.Nested(_WebhookSchema))


class _SettingsSchema(_Section):
    server = fields.Nested(_ServerSchema)
    storage = fields.Nested(_StorageSchema)
    pii = fields.Nested(_PiiSchema)
    cep = fields.Nested(_CepSchema)
    auth = fields.Nested(_AuthSchema)
    authz = fields.Nested(_AuthzSchema)
    ratelimit = fields.Nested(_RateLimitSchema)
    breaker = fields.Nested(_BreakerSchema)
    logging = fields.Nested(_LoggingSchema)
    retention = fields.Nested(_RetentionSchema)
    audit = fields.Nested(_AuditSchema)
    validators = fields.List(fields.Nested(_ValidatorEntrySchema))
    events = fields.Nested(_EventsSchema)


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
        _SettingsSchema().load(layer, partial=True)
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
        checked = _SettingsSchema().load(merged)
    except ValidationError as exc:
        raise SettingsError(f"configuration: {'; '.join(_flatten_errors(exc.messages))}") from None
    if checked["authz"].get("policies_dir") is None:
        checked["authz"]["policies_dir"] = str(DEFAULT_POLICIES)
    _name_webhooks(checked["events"]["webhooks"])
    settings = _build(Settings, {**checked, "base_dir": Path.cwd()}, "")
    env = os.environ if environ is None else environ
    for number, hook in enumerate(settings.events.webhooks):
        webhook_secrets(hook, settings.base_dir, env, where=f"events.webhooks[{number}]")
    return settings


def _name_webhooks(hooks: list[dict[str, Any]]) -> None:
    """Default each endpoint's name to its URL's host:port; names must be unique."""
    seen: set[str] = set()
    for number, hook in enumerate(hooks):
        hook.setdefault("name", urlsplit(hook["url"]).netloc.rpartition("@")[2])
        if hook["name"] in seen:
            raise SettingsError(
                f"configuration: events.webhooks[{number}].name: {hook['name']!r} names two "
                "endpoints; give each a distinct name"
            )
        seen.add(hook["name"])


def webhook_secrets(
    hook: WebhookSettings, base_dir: Path, environ: Mapping[str, str], *, where: str = "webhook"
) -> tuple[bytes, ...]:
    """The HMAC keys of an endpoint: each `whsec_<base64>` secret decoded (several,
    whitespace-separated, during a rotation). Start-up and the relay read them the same way;
    the secrets themselves never enter `Settings` (nor its repr, nor a log line)."""
    if hook.secret_env is not None:
        source = f"{where}.secret_env: env {hook.secret_env}"
        text = environ.get(hook.secret_env)
        if text is None:
            raise SettingsError(f"configuration: {source} is not set")
    else:
        assert hook.secret_file is not None
        path = (base_dir / hook.secret_file).resolve()
        source = f"{where}.secret_file: {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"configuration: {source}: cannot read: {exc.strerror}") from None
    keys = []
    for number, secret in enumerate(text.split(), start=1):
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not secret.startswith("whsec_") or not 24 <= len(key) <= 64:
            raise SettingsError(
                f"configuration: {source}: secret {number} is not whsec_ + base64 of 24 to 64 bytes"
            )
        keys.append(key)
    if not keys:
        raise SettingsError(f"configuration: {source}: holds no secret")
    return tuple(keys)


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
