"""Every check that spans fields or looks outside the configuration (files, installed
extras): run by the loader on the merged settings, so start-up, `db check` and every other
command refuse the same mistakes, and the builders (token verifier, CEP resolver, rate
limiter) only build.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import typing
from collections.abc import Iterator

from service.settings.model import (
    CepSettings,
    HttpProviderSettings,
    OfflineProviderSettings,
    Settings,
    SettingsError,
)

# The CEP providers: the provider sections of `cep` (service/cep/resolver.py builds each).
CEP_PROVIDERS = tuple(
    name
    for name, hint in typing.get_type_hints(CepSettings).items()
    if hint in (HttpProviderSettings, OfflineProviderSettings)
)


def check_settings(settings: Settings) -> None:
    """Raise SettingsError naming every key that is wrong (all of them, not the first)."""
    problems = list(_problems(settings))
    if problems:
        raise SettingsError(f"configuration: {'; '.join(problems)}")


def _problems(settings: Settings) -> Iterator[str]:
    yield from _auth(settings)
    cep = settings.cep
    for name in cep.providers:
        if name not in CEP_PROVIDERS:
            yield f"cep.providers: unknown provider {name!r}; known: {', '.join(CEP_PROVIDERS)}"
    if "offline" in cep.providers and cep.offline.db_path is not None:
        path = settings.path(cep.offline.db_path)
        if not path.is_file():
            yield f"cep.offline.db_path: no such file: {path}"
    for key, url in (("cep.cache.url", cep.cache.url), ("ratelimit.url", settings.ratelimit.url)):
        if url.startswith("redis") and importlib.util.find_spec("redis") is None:
            scheme = url.split(":", 1)[0]  # not the whole URL: it may hold a password
            yield f"{key}: {scheme}:// needs the redis extra (customers-api[redis])"
    if (
        settings.authz.engine == "embedded"
        and not settings.path(settings.authz.policies_dir).is_dir()
    ):
        yield f"authz.policies_dir: no such folder: {settings.path(settings.authz.policies_dir)}"


def _auth(settings: Settings) -> Iterator[str]:
    auth = settings.auth
    if not auth.issuer:
        yield "auth.issuer: must be set (the `iss` tokens must carry)"
    if auth.local_issuer.enabled:
        if "ES256" not in auth.algorithms:
            yield "auth.algorithms: must include ES256 for the local issuer"
        host = settings.server.host
        if not auth.local_issuer.allow_public and not is_loopback(host):
            yield (
                f"the local JWT issuer (a development key that signs any token asked for) is "
                f"enabled and server.host {host!r} is not a loopback address: bind to "
                "127.0.0.1, set auth.local_issuer.enabled: false and use an identity provider, "
                "or set auth.local_issuer.allow_public: true to accept the risk"
            )
    elif auth.jwks_url.startswith(("http://", "https://")):
        pass
    elif auth.jwks_url:
        path = settings.path(auth.jwks_url)
        if not path.is_file():
            yield f"auth.jwks_url: {path} is neither an http(s) URL nor a file"
    else:
        yield (
            "auth.jwks_url: must be an http(s) URL or a file path when "
            "auth.local_issuer.enabled is false"
        )


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
