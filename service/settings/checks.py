"""Every check that spans fields or looks outside the configuration (files, installed
extras): run by the loader on the merged settings, so start-up, `db check` and every other
command refuse the same mistakes, and the builders (token verifier, CEP resolver, rate
limiter) only build.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import ipaddress
import os
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path

from service.settings.model import (
    CepSettings,
    HttpProviderSettings,
    OfflineProviderSettings,
    Settings,
    SettingsError,
    WebhookSettings,
)

# The CEP providers: the provider sections of `cep` (service/cep/resolver.py builds each).
CEP_PROVIDERS = tuple(
    name
    for name, hint in typing.get_type_hints(CepSettings).items()
    if hint in (HttpProviderSettings, OfflineProviderSettings)
)


def check_settings(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """Raise SettingsError naming every key that is wrong (all of them, not the first);
    `environ` (default: the process's) holds the env vars secrets are read from."""
    problems = list(_problems(settings))
    problems += _webhooks(settings, os.environ if environ is None else environ)
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


def _webhooks(settings: Settings, environ: Mapping[str, str]) -> Iterator[str]:
    seen: set[str] = set()
    for number, hook in enumerate(settings.events.webhooks):
        where = f"events.webhooks[{number}]"
        if hook.name in seen:
            yield f"{where}.name: {hook.name!r} names two endpoints; give each a distinct name"
        seen.add(hook.name)
        if (hook.secret_env is None) == (hook.secret_file is None):
            yield f"{where}: give exactly one of secret_env and secret_file"
            continue
        try:
            webhook_secrets(hook, settings.base_dir, environ, where=where)
        except SettingsError as exc:
            yield str(exc)


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
            raise SettingsError(f"{source} is not set")
    else:
        assert hook.secret_file is not None
        path = (base_dir / hook.secret_file).resolve()
        source = f"{where}.secret_file: {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"{source}: cannot read: {exc.strerror}") from None
    keys = []
    for number, secret in enumerate(text.split(), start=1):
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not secret.startswith("whsec_") or not 24 <= len(key) <= 64:
            raise SettingsError(
                f"{source}: secret {number} is not whsec_ + base64 of 24 to 64 bytes"
            )
        keys.append(key)
    if not keys:
        raise SettingsError(f"{source}: holds no secret")
    return tuple(keys)


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
