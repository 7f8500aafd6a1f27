"""docker compose, the Dockerfile and the dev-idp realm agree with config/compose.yaml.

No Docker engine runs here: these tests read the files and check what each one says about
the others (ports, URLs, issuer, audience, roles claim, replica set, healthchecks).
"""

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from service.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
ROLE_SCOPES = json.loads((ROOT / "policies/customers/authz/data.json").read_text())["role_scopes"]


@pytest.fixture(scope="module")
def settings() -> Settings:
    command = SERVICES["api"]["command"]
    config = command[command.index("--config") + 1]
    return load_settings([ROOT / config], environ={})


def _port_map(service: str) -> dict[int, int]:
    """container port -> published host port (entries `[ip:]host:container`)."""
    mapped = {}
    for entry in SERVICES[service].get("ports", []):
        *_, host, container = str(entry).split(":")
        mapped[int(container)] = int(host)
    return mapped


def _mounts(service: str) -> dict[str, str]:
    """container path -> host path."""
    return {
        target: source
        for source, target, *_ in (v.split(":") for v in SERVICES[service].get("volumes", []))
    }


def _realm_mount() -> Path:
    return ROOT / _mounts("keycloak")["/opt/keycloak/data/import"]


def _realm() -> dict[str, Any]:
    (realm_file,) = _realm_mount().glob("*.json")
    realm: dict[str, Any] = json.loads(realm_file.read_text())
    return realm


def _mappers(client: dict[str, Any], kind: str) -> list[dict[str, str]]:
    return [m["config"] for m in client["protocolMappers"] if m["protocolMapper"] == kind]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck(name: str) -> None:
    check = SERVICES[name].get("healthcheck", {})
    assert check.get("test", ["NONE"])[0] in ("CMD", "CMD-SHELL"), name
    assert not check.get("disable", False)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_dependency_waits_for_a_healthy_service(name: str) -> None:
    for target, condition in SERVICES[name].get("depends_on", {}).items():
        assert target in SERVICES
        assert condition["condition"] == "service_healthy", (name, target)
        # A service behind a profile is optional: plain `docker compose up` must not fail.
        optional = bool(SERVICES[target].get("profiles"))
        assert condition.get("required", True) is not optional, (name, target)


def test_compose_up_without_a_profile_needs_no_variables() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"\$\{[^}]*:?\?", text)  # ${VAR:?message} aborts when unset
    assert SERVICES["keycloak"]["profiles"] == ["dev-idp"]
    assert not any(s.get("profiles") for n, s in SERVICES.items() if n != "keycloak")


def test_passed_through_variables_are_settings_keys(settings: Settings) -> None:
    names = SERVICES["api"]["environment"]
    assert all("=" not in name for name in names)  # passed only when set on the host
    # any value will do, but a JWKS URL the loader can check (a URL, or an existing file)
    environ = dict.fromkeys(names, "x") | {"CUSTOMERS__AUTH__JWKS_URL": "https://idp.example/j"}
    passed = load_settings([ROOT / "config/compose.yaml"], environ=environ)
    assert passed.auth.issuer == passed.auth.audience == passed.auth.roles_claim == "x"
    assert settings.auth.issuer != "x"


def test_api_port_healthcheck_and_config_mount(settings: Settings) -> None:
    api = SERVICES["api"]
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port in _port_map("api")
    assert f"127.0.0.1:{settings.server.port}/health/ready" in " ".join(api["healthcheck"]["test"])
    assert _mounts("api")["/app/config"] == "./config"
    assert api["command"][api["command"].index("--config") + 1].startswith("config/")


def test_the_pii_key_file_lives_on_a_named_volume(settings: Settings) -> None:
    """A key file created inside the container would die with it, and the CPFs with it."""
    key_dir = str((Path("/app") / settings.pii.key_file).parent)
    assert _mounts("api")[key_dir] in COMPOSE["volumes"]
    assert f"mkdir -p /app/config /app/var {key_dir}" in DOCKERFILE  # owned by the app user


def test_mongodb_is_a_replica_set_written_with_majority(settings: Settings) -> None:
    url = urlsplit(settings.storage.url)
    query = parse_qs(url.query)
    assert url.hostname in SERVICES and url.hostname == "mongo"
    command = SERVICES["mongo"]["command"]
    replica_set = command[command.index("--replSet") + 1]
    assert query["replicaSet"] == [replica_set]
    assert query["w"] == ["majority"]
    init = SERVICES["mongo"]["healthcheck"]["test"][-1]
    assert f"_id: '{replica_set}'" in init
    assert f"host: '{url.hostname}:{url.port or 27017}'" in init  # the name the api resolves
    assert "isWritablePrimary" in init


def test_opa_serves_the_policies_without_their_tests(settings: Settings) -> None:
    assert settings.authz.engine == "opa"
    url = urlsplit(settings.authz.opa_url)
    command = SERVICES["opa"]["command"]
    assert url.hostname in SERVICES and url.hostname == "opa"
    assert command[command.index("--addr") + 1] == f"0.0.0.0:{url.port}"
    assert command[command.index("--ignore") + 1] == "*_test.rego"
    assert _mounts("opa")[command[-1]] == "./policies"
    assert f"127.0.0.1:{url.port}/health" in " ".join(SERVICES["opa"]["healthcheck"]["test"])


def test_redis_is_the_cep_cache(settings: Settings) -> None:
    url = urlsplit(settings.cep.cache.url)
    assert url.scheme == "redis" and url.hostname in SERVICES and url.hostname == "redis"
    assert (url.port or 6379) == 6379


def test_tokens_from_the_dev_idp_carry_the_issuer_and_keys_the_api_expects(
    settings: Settings,
) -> None:
    keycloak = SERVICES["keycloak"]
    realm = _realm()["realm"]
    issuer = urlsplit(settings.auth.issuer)
    # Tokens are requested on the published port; KC_HOSTNAME fixes their `iss` to it.
    assert settings.auth.issuer == f"{keycloak['environment']['KC_HOSTNAME']}/realms/{realm}"
    assert issuer.port in _port_map("keycloak").values()
    assert "--import-realm" in keycloak["command"]
    # The api fetches the keys inside the network, on the container port.
    jwks = urlsplit(settings.auth.jwks_url)
    assert jwks.hostname == "keycloak" and jwks.port in _port_map("keycloak")
    assert jwks.path == f"/realms/{realm}/protocol/openid-connect/certs"
    assert settings.auth.local_issuer.enabled is False


def test_realm_clients_put_audience_and_roles_where_the_api_reads_them(
    settings: Settings,
) -> None:
    clients = _realm()["clients"]
    assert clients
    for client in clients:
        assert client["serviceAccountsEnabled"] and not client["publicClient"], client
        assert "basic" in client["defaultClientScopes"]  # the `sub` claim
        (audience,) = _mappers(client, "oidc-audience-mapper")
        assert audience["included.custom.audience"] == settings.auth.audience
        assert audience["access.token.claim"] == "true"
        (roles,) = _mappers(client, "oidc-usermodel-realm-role-mapper")
        assert roles["claim.name"] == settings.auth.roles_claim
        assert roles["multivalued"] == "true" and roles["access.token.claim"] == "true"


def test_realm_roles_are_the_roles_of_the_policy_data() -> None:
    realm = _realm()
    assert {role["name"] for role in realm["roles"]["realm"]} == set(ROLE_SCOPES)
    clients = {client["clientId"] for client in realm["clients"]}
    granted = set()
    for user in realm["users"]:
        assert user["serviceAccountClientId"] in clients
        granted.update(user["realmRoles"])
    assert granted == set(ROLE_SCOPES)  # a client to try each role with


def test_the_readme_commands_match_the_realm(settings: Settings) -> None:
    readme = (ROOT / "docs" / "operations.md").read_text()  # its "docker compose"
    token_url = f"{settings.auth.issuer}/protocol/openid-connect/token"
    (command,) = [line for line in readme.splitlines() if token_url in line]
    client_id = re.search(r"client_id=(\S+)", command)
    secret = re.search(r"client_secret=(\S+)", command)
    assert client_id and secret
    (client,) = [c for c in _realm()["clients"] if c["clientId"] == client_id[1]]
    assert client["secret"] == secret[1]
    port = settings.server.port
    assert f"http://127.0.0.1:{port}/api/v1/customers" in readme
    assert "--profile dev-idp up" in readme


def test_dockerfile_runs_the_wheel_as_non_root_with_a_healthcheck(settings: Settings) -> None:
    assert len(re.findall(r"^FROM ", DOCKERFILE, re.MULTILINE)) == 2  # build, then runtime
    assert "pip wheel" in DOCKERFILE and "--no-index" in DOCKERFILE
    assert "pip install -e" not in DOCKERFILE
    (user,) = re.findall(r"^USER (\S+)", DOCKERFILE, re.MULTILINE)
    assert user not in ("root", "0")
    (healthcheck,) = re.findall(r"^HEALTHCHECK (?:.*\\\n)*.*", DOCKERFILE, re.MULTILINE)
    assert f"127.0.0.1:{settings.server.port}/health/ready" in healthcheck
    assert re.search(rf"^EXPOSE {settings.server.port}$", DOCKERFILE, re.MULTILINE)
    assert re.search(r"^WORKDIR /app$", DOCKERFILE, re.MULTILINE)  # where /app/config mounts
