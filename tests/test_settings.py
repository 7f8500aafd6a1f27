import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from service.__main__ import main
from service.settings import (
    DEFAULT_CONFIG,
    HttpProviderSettings,
    SettingsError,
    ValidatorEntry,
    load_settings,
    loader,
)


def test_default_profile_is_embedded():
    settings = load_settings(environ={})
    assert settings.storage.url == "sqlite:///var/customers.db"
    assert settings.authz.engine == "embedded"
    assert settings.cep.providers == ("viacep", "offline")
    assert settings.auth.local_issuer.enabled is True
    assert [v.use for v in settings.validators] == [
        "email",
        "email_unique",
        "phone",
        "cpf",
        "cpf_unique",
        "cep",
    ]


def test_files_layer_in_order_then_env_wins(tmp_path):
    first = tmp_path / "first.yaml"
    first.write_text("server: {port: 9001, host: localhost}\ncep: {providers: [offline]}\n")
    second = tmp_path / "second.yaml"
    second.write_text("server: {port: 9002}\n")
    settings = load_settings([first, second], environ={"CUSTOMERS__SERVER__PORT": "9003"})
    assert settings.server.port == 9003
    assert settings.server.host == "localhost"  # from the first file, untouched by the second
    assert settings.cep.providers == ("offline",)  # lists are replaced, not merged
    assert settings.cep.viacep.base_url == "https://viacep.com.br"  # siblings keep defaults


def test_env_values_are_yaml_and_nest_by_double_underscore():
    settings = load_settings(
        environ={
            "CUSTOMERS__CEP__CACHE__TTL_FOUND_S": "60",
            "CUSTOMERS__VALIDATORS": "[{use: email}, {use: cpf, enabled: false}]",
            "OTHER__SERVER__PORT": "1",
        }
    )
    assert settings.cep.cache.ttl_found_s == 60
    assert [(v.use, v.enabled) for v in settings.validators] == [("email", True), ("cpf", False)]
    assert settings.server.port == 8080


def test_unknown_key_names_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  prot: 9000\n")
    with pytest.raises(SettingsError, match=rf"{bad}: .*server\.prot: Unknown field"):
        load_settings([bad], environ={})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"CUSTOMERS__SERVER__PORT": "eighty"}, r"env CUSTOMERS__SERVER__PORT: .*server\.port"),
        ({"CUSTOMERS__AUTHZ__ENGINE": "magic"}, r"env CUSTOMERS__AUTHZ__ENGINE: .*authz\.engine"),
        ({"CUSTOMERS__AUTH__ALGORITHMS": "[HS256]"}, r"auth\.algorithms"),
        ({"CUSTOMERS__AUTH__ALGORITHMS": "[none]"}, r"auth\.algorithms"),
        ({"CUSTOMERS__STORAGE__URL": "postgres://x"}, r"storage\.url"),
        ({"CUSTOMERS__VALIDATORS": "[{options: {}}]"}, r"validators\.0\.use"),
    ],
)
def test_bad_values_are_refused_with_their_source(environ, expected):
    with pytest.raises(SettingsError, match=expected):
        load_settings(environ=environ)


def test_missing_or_broken_files_are_named(tmp_path):
    with pytest.raises(SettingsError, match="nope.yaml: cannot read"):
        load_settings([tmp_path / "nope.yaml"], environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("server: [unclosed\n")
    with pytest.raises(SettingsError, match="broken.yaml: not valid YAML"):
        load_settings([broken], environ={})
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(SettingsError, match="scalar.yaml: the top level must be a mapping"):
        load_settings([scalar], environ={})


def test_shipped_config_files_load():
    for path in sorted(DEFAULT_CONFIG.parent.glob("*.yaml")):
        load_settings([path], environ={})


def test_sections_are_typed_objects_built_from_the_yaml(tmp_path):
    settings = load_settings(environ={"CUSTOMERS__CEP__VIACEP__TIMEOUT_S": "0.7"})
    assert isinstance(settings.cep.viacep, HttpProviderSettings)
    assert settings.cep.viacep == HttpProviderSettings("https://viacep.com.br", 0.7)
    assert isinstance(settings.auth.algorithms, tuple)
    assert all(isinstance(entry, ValidatorEntry) for entry in settings.validators)
    # An entry of a list takes its own defaults: `{use: cpf}` is enabled, without options.
    assert settings.validators[3] == ValidatorEntry("cpf", {}, True)


def test_default_yaml_is_the_one_source_of_defaults(tmp_path, monkeypatch):
    """The model has no defaults of its own: a key missing from default.yaml stops start-up."""
    default = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    del default["cep"]["cache"]["ttl_missing_s"]
    trimmed = tmp_path / "default.yaml"
    trimmed.write_text(yaml.safe_dump(default), encoding="utf-8")
    monkeypatch.setattr(loader, "DEFAULT_CONFIG", trimmed)
    with pytest.raises(SettingsError, match=r"cep\.cache\.ttl_missing_s: missing"):
        load_settings(environ={})


P = "CUSTOMERS__"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        (
            {"CUSTOMERS__CEP__PROVIDERS": "[viacep, correios]"},
            "cep.providers: unknown provider 'correios'",
        ),
        ({"CUSTOMERS__CEP__OFFLINE__DB_PATH": "missing.db"}, "cep.offline.db_path: no such file"),
        ({"CUSTOMERS__AUTH__ISSUER": '""'}, "auth.issuer: must be set"),
        ({"CUSTOMERS__AUTH__ALGORITHMS": "[RS256]"}, "auth.algorithms: must include ES256"),
        ({"CUSTOMERS__SERVER__HOST": "0.0.0.0"}, "auth.local_issuer.allow_public"),
        (
            {"CUSTOMERS__AUTH__LOCAL_ISSUER__ENABLED": "false"},
            "auth.jwks_url: must be an http(s) URL",
        ),
        (
            {
                "CUSTOMERS__AUTH__LOCAL_ISSUER__ENABLED": "false",
                "CUSTOMERS__AUTH__JWKS_URL": "no.json",
            },
            "auth.jwks_url:",
        ),
        (
            {"CUSTOMERS__AUTHZ__POLICIES_DIR": "no-such-folder"},
            "authz.policies_dir: no such folder",
        ),
    ],
)
def test_cross_field_and_existence_checks_are_the_loaders(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environ: dict[str, str],
    named: str,
) -> None:
    """What start-up refuses, the loader refuses: so `db check` and every command do too."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match=re.escape(named)):
        load_settings(environ=environ)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["db", "check"]) == 2  # refused before any database is opened
    assert named in capsys.readouterr().err


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(
            environ={"CUSTOMERS__CEP__PROVIDERS": "[nope]", "CUSTOMERS__AUTH__ISSUER": '""'}
        )
    assert "cep.providers" in str(info.value) and "auth.issuer" in str(info.value)


def test_the_known_cep_providers_are_the_provider_sections() -> None:
    from service.cep.resolver import PROVIDERS
    from service.settings.checks import CEP_PROVIDERS

    assert set(CEP_PROVIDERS) == set(PROVIDERS)


@pytest.mark.parametrize("key", ["CEP__CACHE__URL", "RATELIMIT__URL"])
def test_redis_without_the_extra_names_the_setting_not_the_password(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "redis" else real(name)
    )
    with pytest.raises(SettingsError, match="needs the redis extra") as info:
        load_settings(environ={f"CUSTOMERS__{key}": "redis://:secret@redis:6379/0"})
    assert key.lower().replace("__", ".") in str(info.value)
    assert "secret" not in str(info.value)
