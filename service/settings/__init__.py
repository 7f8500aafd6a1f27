"""Configuration: the typed model the service reads, and the loader that builds it.

- `model`: one frozen dataclass per section (`Settings`, `CepSettings`, ...), no defaults;
- `loader`: YAML layers (`config/default.yaml` < `--config` files < `CUSTOMERS__*` env vars
  < overrides from code), checked by marshmallow schemas, converted to the model.
"""

from service.settings.loader import (
    DEFAULT_CONFIG,
    DEFAULT_POLICIES,
    deep_merge,
    load_settings,
)
from service.settings.model import (
    AuditSettings,
    AuthSettings,
    AuthzSettings,
    BreakerSettings,
    CepCacheSettings,
    CepSettings,
    EventSettings,
    HttpProviderSettings,
    LocalIssuerSettings,
    LoggingSettings,
    OfflineProviderSettings,
    PiiSettings,
    RateLimitSettings,
    ServerSettings,
    Settings,
    SettingsError,
    StorageSettings,
    ValidatorEntry,
    WebhookSettings,
)

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_POLICIES",
    "AuthSettings",
    "AuthzSettings",
    "BreakerSettings",
    "CepCacheSettings",
    "CepSettings",
    "HttpProviderSettings",
    "LocalIssuerSettings",
    "AuditSettings",
    "LoggingSettings",
    "OfflineProviderSettings",
    "PiiSettings",
    "RateLimitSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "StorageSettings",
    "ValidatorEntry",
    "WebhookSettings",
    "EventSettings",
    "deep_merge",
    "load_settings",
]
