"""The local issuer: its key file, its tokens, and where it may run."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from service.auth.jwt import build_token_verifier
from service.auth.local_issuer import (
    LocalIssuer,
    _create_key_file,
    issue_local_token,
    jwk_thumbprint,
)
from service.errors import Unauthenticated
from service.settings import Settings, SettingsError, load_settings
from tests.auth.jwt_helpers import bearer

ISSUER = "http://127.0.0.1:8080/local-issuer"


def embedded_settings(
    tmp_path: Path, server: dict[str, Any] | None = None, **auth: Any
) -> Settings:
    """The embedded profile (config/default.yaml) with the key in tmp_path."""
    local = {"key_file": str(tmp_path / "keys" / "k.pem"), **auth.pop("local_issuer", {})}
    overrides = {"auth": {"local_issuer": local, **auth}, "server": server or {}}
    return load_settings(environ={}, overrides=overrides)


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def test_key_file_is_created_private_and_reused(tmp_path):
    key_file = tmp_path / "keys" / "k.pem"
    first = LocalIssuer(key_file, ISSUER, "customers-api")
    first.load_or_create()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pem = key_file.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")

    second = LocalIssuer(key_file, ISSUER, "customers-api")
    assert second.jwks() == first.jwks()
    assert key_file.read_bytes() == pem
    assert list(key_file.parent.iterdir()) == [key_file]


def test_concurrent_creation_keeps_the_first_file(tmp_path):
    key_file = tmp_path / "k.pem"
    LocalIssuer(key_file, ISSUER, "customers-api").load_or_create()
    pem = key_file.read_bytes()
    _create_key_file(key_file)  # a second process that lost the race
    assert key_file.read_bytes() == pem
    assert list(tmp_path.iterdir()) == [key_file]


def test_public_jwks(tmp_path):
    issuer = LocalIssuer(tmp_path / "k.pem", ISSUER, "customers-api")
    (jwk,) = issuer.jwks()["keys"]
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
    assert jwk["alg"] == "ES256" and jwk["use"] == "sig"
    assert jwk["kid"] == jwk_thumbprint(jwk)
    assert "d" not in jwk
    other = LocalIssuer(tmp_path / "other.pem", ISSUER, "customers-api")
    assert other.jwks()["keys"][0]["kid"] != jwk["kid"]


def test_thumbprint_matches_rfc7638_example():
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc"
            "_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQ"
            "R0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bF"
            "TWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_issued_claims(tmp_path):
    issuer = LocalIssuer(tmp_path / "k.pem", ISSUER, "customers-api", "realm_access.roles")
    token = issuer.issue("alice", ["customers:read", "customers:pii"], ["ops"], ttl_s=600)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    assert header["kid"] == issuer.jwks()["keys"][0]["kid"]
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["iss"] == ISSUER and payload["aud"] == "customers-api"
    assert payload["sub"] == "alice"
    assert payload["scope"] == "customers:read customers:pii"
    assert payload["realm_access"] == {"roles": ["ops"]}
    assert payload["exp"] - payload["iat"] == 600
    assert payload["nbf"] == payload["iat"]
    assert (
        payload["jti"]
        != jwt.decode(issuer.issue("alice"), options={"verify_signature": False})["jti"]
    )


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"subject": ""}, ValueError),
        ({"subject": "a", "ttl_s": 0}, ValueError),
        ({"subject": "a", "scopes": "customers:read"}, TypeError),
    ],
)
def test_issue_rejects_bad_arguments(tmp_path, kwargs, error):
    with pytest.raises(error):
        LocalIssuer(tmp_path / "k.pem", ISSUER, "customers-api").issue(**kwargs)


def test_unreadable_key_file_names_the_setting(tmp_path):
    key_file = tmp_path / "k.pem"
    key_file.write_text("not a key")
    with pytest.raises(SettingsError, match="auth.local_issuer.key_file"):
        LocalIssuer(key_file, ISSUER, "customers-api").load_or_create()


async def test_issued_token_is_accepted_by_the_embedded_verifier(tmp_path, session):
    settings = embedded_settings(tmp_path, roles_claim="realm_access.roles")
    verifier = build_token_verifier(settings, session)
    token = issue_local_token(settings, "alice", ["customers:read"], ["admin", "ops"], 600)
    principal = await verifier.authenticate(bearer(token))
    assert principal.subject == "alice"
    assert principal.issuer == settings.auth.issuer
    assert principal.scopes == frozenset({"customers:read"})
    assert principal.roles == frozenset({"admin", "ops"})


async def test_token_from_another_key_file_is_refused(tmp_path, session):
    verifier = build_token_verifier(embedded_settings(tmp_path), session)
    other = embedded_settings(tmp_path / "elsewhere")
    with pytest.raises(Unauthenticated):
        await verifier.authenticate(bearer(issue_local_token(other, "mallory")))


def test_no_token_without_a_local_issuer(tmp_path):
    settings = embedded_settings(
        tmp_path, local_issuer={"enabled": False}, jwks_url="https://idp.example/jwks"
    )
    with pytest.raises(SettingsError, match=r"auth\.local_issuer\.enabled is false"):
        issue_local_token(settings, "alice")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_hosts_are_allowed(tmp_path, host):
    assert embedded_settings(tmp_path, server={"host": host}).server.host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "api.example.com"])
def test_public_hosts_are_refused_by_the_loader_unless_allowed(tmp_path, host):
    """The loader refuses it, so `serve`, `db check` and every command do."""
    with pytest.raises(SettingsError) as info:
        embedded_settings(tmp_path, server={"host": host})
    assert "auth.local_issuer.allow_public" in str(info.value)
    assert repr(host) in str(info.value)
    embedded_settings(tmp_path, local_issuer={"allow_public": True}, server={"host": host})
    embedded_settings(
        tmp_path,
        local_issuer={"enabled": False},
        jwks_url="https://idp.example/jwks",
        server={"host": host},
    )
