"""`events` settings (checked at load, secrets never in Settings) and the event model
(it cannot carry anything but field names)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.customers.errors import InvalidCursor
from service.events.model import FIELD_NAMES, decode_cursor, encode_cursor, new_event
from service.settings import SettingsError, load_settings
from service.settings.checks import webhook_secrets
from tests.events.receiver import new_secret


def load(hooks: list[dict[str, Any]], environ: dict[str, str] | None = None) -> Any:
    return load_settings(environ=environ or {}, overrides={"events": {"webhooks": hooks}})


def hook(**changes: Any) -> dict[str, Any]:
    return {
        "url": "https://crm.example/hook",
        "secret_env": "S",
        "types": ["customer.created"],
        **changes,
    }


def test_defaults_keep_thirty_days_and_no_webhook() -> None:
    settings = load_settings(environ={})
    assert settings.events.retention_days == 30 and settings.events.webhooks == ()


def test_a_webhook_loads_with_its_name_defaulting_to_the_host_and_no_secret_kept() -> None:
    secret, key = new_secret()
    settings = load([hook(url="https://user:pw@crm.example:8443/h")], {"S": secret})
    (loaded,) = settings.events.webhooks
    assert loaded.name == "crm.example:8443" and loaded.types == ("customer.created",)
    assert secret not in repr(settings) and "pw" not in loaded.name
    assert webhook_secrets(loaded, Path.cwd(), {"S": f"{secret}  {new_secret()[0]}"})[0] == key


@pytest.mark.parametrize(
    ("hooks", "environ", "message"),
    [
        ([hook()], {}, "events.webhooks[0].secret_env: env S is not set"),
        ([hook()], {"S": "whsec_short"}, "secret 1 is not whsec_"),
        ([hook()], {"S": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}, "secret 1 is not whsec_"),
        ([hook()], {"S": "  "}, "holds no secret"),
        ([hook(secret_file="/nonexistent/secret")], {}, "exactly one of secret_env"),
        ([{k: v for k, v in hook().items() if k != "secret_env"}], {}, "exactly one of"),
        ([hook(secret_env=None, secret_file="/nonexistent/s")], {}, "secret_file: /nonexistent/s"),
        ([hook(types=["customer.deleted"])], {}, "events.webhooks.0.types"),
        ([hook(types=[])], {}, "types"),
        ([hook(url="ftp://crm.example/h")], {}, "url"),
        ([hook(), hook()], {"S": new_secret()[0]}, "names two endpoints"),
        ([hook(name="no spaces")], {}, "name"),
    ],
)
def test_a_bad_webhook_stops_the_start_naming_the_key(
    hooks: list[dict[str, Any]], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message.replace(".", r"\.").replace("[", r"\[")):
        load(hooks, environ)


def test_a_secret_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SettingsError, match=f"secret_file: {missing}: cannot read"):
        load(
            [{**hook(secret_env=None), "secret_file": str(missing)}]
            if False
            else [
                {
                    "url": "https://crm.example/h",
                    "secret_file": str(missing),
                    "types": ["customer.created"],
                }
            ]
        )


def test_retention_days_is_checked() -> None:
    with pytest.raises(SettingsError, match="retention_days"):
        load_settings(environ={}, overrides={"events": {"retention_days": 0}})


@given(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=5))
def test_an_event_carries_field_names_only(names: list[str]) -> None:
    at = datetime.now(UTC)
    if set(names) <= FIELD_NAMES:
        assert new_event("customer.updated", "0" * 24, names, at).fields == tuple(
            sorted(set(names))
        )
    else:
        with pytest.raises(ValueError) as refused:
            new_event("customer.updated", "0" * 24, names, at)
        # the same words whatever was refused: the error never repeats a value
        assert (
            str(refused.value) == "an event names customer fields only; something else was refused"
        )


@given(st.integers(0, 2**63 - 1))
def test_cursors_round_trip_and_anything_else_is_refused(position: int) -> None:
    assert decode_cursor(encode_cursor(position)) == position
    for bad in ("", "x", encode_cursor(position) + "A", "AAAAAAAAAAAA", "ZQ=AAAAAAAAA"):
        with pytest.raises(InvalidCursor):
            decode_cursor(bad)
