"""EmbeddedPolicyEngine: the default policy's decisions, hot reload, bad edits, bad start."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from service.authz import build_policy_engine
from service.authz.decision import Decision, PolicyEngineError
from service.authz.embedded import EmbeddedPolicyEngine
from service.authz.opa import OpaPolicyEngine
from service.authz.rego import PolicyLoadError
from service.customers.model import DEFAULT_MASKED
from service.errors import ServiceUnavailable
from service.settings import load_settings
from tests.authz.inputs import COLLECTION, ITEM, POLICIES_DIR, data_file, policy_file, request

PII = DEFAULT_MASKED  # the field table's `masked`: what the default policy hides
# Nesting this deep overflows regorus' parser stack: the process dies with SIGSEGV.
CRASHING_RULE = "crash := " + "(" * 5000 + "1" + ")" * 5000 + "\n"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A copy of policies/ that a test may edit."""
    return Path(shutil.copytree(POLICIES_DIR, tmp_path / "policies"))


@pytest.fixture
def engine() -> EmbeddedPolicyEngine:
    return EmbeddedPolicyEngine(POLICIES_DIR)


# --- the default policy ---


@pytest.mark.parametrize(
    ("method", "path", "scopes", "allow"),
    [
        ("GET", COLLECTION, ["customers:read"], True),
        ("GET", ITEM, ["customers:read"], True),
        ("POST", COLLECTION, ["customers:read"], False),
        ("POST", COLLECTION, ["customers:write"], True),
        ("PATCH", ITEM, ["customers:read"], False),
        ("PATCH", ITEM, ["customers:write"], True),
        ("DELETE", ITEM, ["customers:read", "customers:write", "customers:pii"], False),
        ("DELETE", ITEM, ["customers:delete"], True),
        ("GET", ITEM, [], False),
        ("GET", ITEM, ["orders:read"], False),
        ("PUT", ITEM, ["customers:write"], False),
        ("GET", ["api", "v1", "orders"], ["customers:read"], False),
    ],
)
async def test_scope_matrix(
    engine: EmbeddedPolicyEngine, method: str, path: list[str], scopes: list[str], allow: bool
) -> None:
    decision = await engine.decide(request(method, path, scopes))
    assert decision.allow is allow
    assert decision.reasons


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("support", {"GET"}),
        ("onboarding", {"GET", "POST", "PATCH"}),
        ("dpo", {"GET", "DELETE"}),
        ("unknown", set()),
    ],
)
async def test_roles_from_data_json(
    engine: EmbeddedPolicyEngine, role: str, allowed: set[str]
) -> None:
    got = set()
    for method, path in [("GET", ITEM), ("POST", COLLECTION), ("PATCH", ITEM), ("DELETE", ITEM)]:
        if (await engine.decide(request(method, path, [], (role,)))).allow:
            got.add(method)
    assert got == allowed


async def test_pii_masked_without_pii_scope(engine: EmbeddedPolicyEngine) -> None:
    decision = await engine.decide(request("GET", ITEM, ["customers:read"], ("onboarding",)))
    assert decision.masked_fields == PII


async def test_pii_clear_with_pii_scope(engine: EmbeddedPolicyEngine) -> None:
    scoped = await engine.decide(request("GET", ITEM, ["customers:read", "customers:pii"]))
    by_role = await engine.decide(request("GET", COLLECTION, [], ("dpo",)))
    assert scoped.masked_fields == by_role.masked_fields == frozenset()


async def test_missing_principal_denied(engine: EmbeddedPolicyEngine) -> None:
    decision = await engine.decide({"method": "GET", "path": COLLECTION})
    assert decision.allow is False
    assert "no principal" in decision.reasons


# --- hot reload ---


async def test_data_edit_applies_on_next_decision(policies: Path) -> None:
    engine = EmbeddedPolicyEngine(policies, check_interval_s=0)
    post = request("POST", COLLECTION, [], ("support",))
    assert (await engine.decide(post)).allow is False

    data = json.loads(data_file(policies).read_text())
    data["role_scopes"]["support"].append("customers:write")
    data_file(policies).write_text(json.dumps(data))

    assert (await engine.decide(post)).allow is True


async def test_policy_edit_applies_on_next_decision(policies: Path) -> None:
    engine = EmbeddedPolicyEngine(policies, check_interval_s=0)
    get = request("GET", ITEM, ["customers:read"])
    assert (await engine.decide(get)).masked_fields == PII

    text = policy_file(policies).read_text()
    policy_file(policies).write_text(text.replace('{"cpf", "phone"}', '{"cpf", "phone", "email"}'))

    assert (await engine.decide(get)).masked_fields == PII | {"email"}


@pytest.mark.parametrize(
    ("name", "edit"),
    [
        ("syntax error", lambda text: text + "\nallow if {\n"),
        ("unsafe variable", lambda text: text.replace("in scopes\n", "in scopez\n", 1)),
        ("no decision", lambda text: text.replace("decision := {", "decision_v2 := {")),
        ("crash", lambda text: text + CRASHING_RULE),
    ],
)
async def test_bad_policy_edit_keeps_last_good_policy(
    policies: Path, caplog: pytest.LogCaptureFixture, name: str, edit: Any
) -> None:
    engine = EmbeddedPolicyEngine(policies, check_interval_s=0)
    get = request("GET", ITEM, ["customers:read"])
    policy_file(policies).write_text(edit(policy_file(policies).read_text()))

    with caplog.at_level(logging.ERROR, logger="service.authz.embedded"):
        decision = await engine.decide(get)

    assert decision.allow is True
    assert "keeping the last good policy" in caplog.text
    assert str(policy_file(policies)) in caplog.text


async def test_bad_data_edit_keeps_last_good_policy(
    policies: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = EmbeddedPolicyEngine(policies, check_interval_s=0)
    data_file(policies).write_text('{"role_scopes": {"support": ')
    with caplog.at_level(logging.ERROR, logger="service.authz.embedded"):
        decision = await engine.decide(request("GET", ITEM, [], ("support",)))
    assert decision.allow is True
    assert f"{data_file(policies)}: not valid JSON" in caplog.text


async def test_fixed_edit_after_bad_edit_is_loaded(policies: Path) -> None:
    engine = EmbeddedPolicyEngine(policies, check_interval_s=0)
    good = data_file(policies).read_text()
    data_file(policies).write_text("{")
    await engine.decide(request("GET", ITEM, ["customers:read"]))
    data_file(policies).write_text(good.replace('"support": [', '"support": ["customers:delete", '))
    assert (await engine.decide(request("DELETE", ITEM, [], ("support",)))).allow is True


# --- start-up and evaluation errors ---


@pytest.mark.parametrize(
    "edit",
    [lambda text: text + "\nallow if {\n", lambda text: text + CRASHING_RULE],
    ids=["syntax error", "crash"],
)
def test_bad_policy_at_start_names_the_file(policies: Path, edit: Any) -> None:
    policy_file(policies).write_text(edit(policy_file(policies).read_text()))
    with pytest.raises(PolicyLoadError, match=str(policy_file(policies))):
        EmbeddedPolicyEngine(policies)


def test_error_location_points_at_the_edited_line(policies: Path) -> None:
    lines = policy_file(policies).read_text().splitlines()
    line = lines.index("\trequired_scope in scopes") + 1
    lines[line - 1] = "\trequired_scope in scopez"
    policy_file(policies).write_text("\n".join(lines))
    with pytest.raises(PolicyLoadError, match=f"{policy_file(policies)}:{line}:"):
        EmbeddedPolicyEngine(policies)


def test_missing_policy_dir_at_start(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError):
        EmbeddedPolicyEngine(tmp_path / "nowhere")


async def test_evaluation_error_is_engine_error(policies: Path) -> None:
    # Fine for the start-up check's sample input (string scopes), an error for number scopes.
    policy_file(policies).write_text(
        "package customers.authz\n\nimport rego.v1\n\n"
        'decision := {"allow": false, "reasons": [concat(",", input.principal.scopes)], '
        '"masked_fields": []}\n'
    )
    engine = EmbeddedPolicyEngine(policies, check_interval_s=0)
    assert (await engine.decide(request("GET", ITEM, ["customers:read"]))).allow is False
    with pytest.raises(PolicyEngineError) as caught:
        await engine.decide({"principal": {"scopes": [1]}})
    assert isinstance(caught.value, ServiceUnavailable)  # a domain error: the edge answers 503


async def test_build_policy_engine(tmp_path: Path) -> None:
    shutil.copytree(POLICIES_DIR, tmp_path / "rules")
    async with aiohttp.ClientSession() as session:
        defaults = load_settings(environ={}).authz
        embedded = build_policy_engine(
            dataclasses.replace(defaults, engine="embedded", policies_dir="rules"),
            session,
            base_dir=tmp_path,
        )
        opa = build_policy_engine(
            dataclasses.replace(defaults, engine="opa"), session, base_dir=tmp_path
        )
    assert isinstance(embedded, EmbeddedPolicyEngine)
    assert (await embedded.decide(request("GET", ITEM, ["customers:read"]))).allow is True
    assert isinstance(opa, OpaPolicyEngine)


# --- Decision.from_result ---


@pytest.mark.parametrize(
    "result",
    [
        None,
        "<undefined>",
        True,
        [],
        {},
        {"allow": True},
        {"allow": "true", "reasons": [], "masked_fields": []},
        {"allow": 1, "reasons": [], "masked_fields": []},
        {"allow": True, "reasons": "ok", "masked_fields": []},
        {"allow": True, "reasons": [], "masked_fields": None},
        {"allow": True, "reasons": [], "masked_fields": [1]},
    ],
)
def test_malformed_result_is_deny(result: object) -> None:
    decision = Decision.from_result(result)
    assert decision.allow is False
    assert decision.reasons == ("policy returned no valid decision",)


def test_well_formed_result() -> None:
    result = {"allow": True, "reasons": ["granted"], "masked_fields": ["cpf"], "extra": 1}
    assert Decision.from_result(result) == Decision(True, ("granted",), frozenset({"cpf"}))


async def test_an_input_that_is_not_unicode_is_never_allowed(
    engine: EmbeddedPolicyEngine,
) -> None:
    plain = request("GET", ["api", "v1", "customers"], ["customers:read"])
    assert (await engine.decide(plain)).allow is True
    with pytest.raises(PolicyEngineError):  # 503: no decision, never an allow
        await engine.decide({**plain, "query": ["\ud800"]})


# --- finding #8 of the third review: a stray data.json replaced data.customers ---

# (directory under policies/, document): each overlaps customers/authz/data.json.
OVERLAPPING = [
    pytest.param("", {"customers": {"authz": {"role_scopes": {}}}}, id="root-customers"),
    pytest.param("", {"customers": {}}, id="root-customers-empty"),
    pytest.param("customers", {"authz": {"role_scopes": {"support": ["customers:pii"]}}}, id="up"),
    pytest.param("customers/authz/role_scopes", {"support": []}, id="below"),
    pytest.param("customers/authz/role_scopes/support", {"x": 1}, id="two-below"),
]


def _stray(policies: Path, where: str, document: dict[str, Any]) -> Path:
    directory = policies / where
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "data.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(("where", "document"), OVERLAPPING)
def test_overlapping_data_documents_are_refused_at_start_naming_both(
    policies: Path, where: str, document: dict[str, Any]
) -> None:
    stray = _stray(policies, where, document)
    with pytest.raises(PolicyLoadError) as caught:
        EmbeddedPolicyEngine(policies)
    assert str(stray) in str(caught.value) and str(data_file(policies)) in str(caught.value)


@pytest.mark.parametrize(("where", "document"), OVERLAPPING)
async def test_an_overlapping_data_document_added_later_keeps_the_last_good_policy(
    policies: Path, caplog: pytest.LogCaptureFixture, where: str, document: dict[str, Any]
) -> None:
    engine = EmbeddedPolicyEngine(policies, check_interval_s=0)
    support_delete = request("DELETE", ITEM, [], ("support",))
    assert (await engine.decide(support_delete)).allow is False
    stray = _stray(policies, where, {**document, "customers": {"authz": {"role_scopes": {}}}})
    with caplog.at_level(logging.ERROR, logger="service.authz.embedded"):
        assert (await engine.decide(support_delete)).allow is False
    assert "keeping the last good policy" in caplog.text and str(stray) in caplog.text


@pytest.mark.parametrize(
    ("where", "document"),
    [
        pytest.param("", {"other": {"x": 1}}, id="root-other-key"),
        pytest.param("customers/other", {"x": 1}, id="sibling-directory"),
        pytest.param("system", {"flags": {}}, id="other-package"),
    ],
)
async def test_data_documents_beside_each_other_load(
    policies: Path, where: str, document: dict[str, Any]
) -> None:
    _stray(policies, where, document)
    engine = EmbeddedPolicyEngine(policies)
    assert (await engine.decide(request("GET", ITEM, ["customers:read"]))).allow is True


def test_the_digest_names_the_loaded_files(policies: Path) -> None:
    """The server logs it once it listens (tests/test_cli.py checks the line)."""
    engine = EmbeddedPolicyEngine(policies)
    assert engine.digest.startswith("sha256:")
    assert EmbeddedPolicyEngine(policies).digest == engine.digest  # same files, same digest


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda data: {**data, "role_scopes": {}}, id="deny-all"),
        pytest.param(
            lambda data: {
                **data,
                "role_scopes": {r: ["customers:delete"] for r in data["role_scopes"]},
            },
            id="grant-all",
        ),
    ],
)
async def test_every_reload_names_the_changed_files_and_a_new_digest(
    policies: Path, caplog: pytest.LogCaptureFixture, edit: Any
) -> None:
    engine = EmbeddedPolicyEngine(policies, check_interval_s=0)
    before = engine.digest
    data = json.loads(data_file(policies).read_text())
    data_file(policies).write_text(json.dumps(edit(data)))
    with caplog.at_level(logging.INFO, logger="service.authz.embedded"):
        await engine.decide(request("GET", ITEM, ["customers:read"]))
    assert engine.digest != before
    reloaded = [r for r in caplog.records if "policy reloaded" in r.getMessage()]
    assert len(reloaded) == 1 and reloaded[0].levelno >= logging.WARNING
    message = reloaded[0].getMessage()
    assert "changed customers/authz/data.json" in message and engine.digest in message


# --- lifecycle: visible statuses and the action scopes ---

ALL_STATUSES = frozenset({"active", "blocked", "closed", "anonymized"})


@pytest.mark.parametrize(
    ("scopes", "roles", "visible"),
    [
        (["customers:read"], (), {"active"}),
        (["customers:read", "customers:pii"], ("support", "onboarding"), {"active"}),
        (["customers:read", "customers:restricted"], (), ALL_STATUSES),
        ([], ("dpo",), ALL_STATUSES),
    ],
)
async def test_visible_statuses_are_read_from_the_policy(
    engine: EmbeddedPolicyEngine, scopes: list[str], roles: tuple[str, ...], visible: set[str]
) -> None:
    decision = await engine.decide(request("GET", ITEM, scopes, roles))
    assert decision.visible_statuses == visible


@pytest.mark.parametrize(
    ("action", "scope"),
    [
        ("block", "customers:lifecycle"),
        ("unblock", "customers:lifecycle"),
        ("reopen", "customers:lifecycle"),
        ("anonymize", "customers:anonymize"),
    ],
)
async def test_each_action_needs_its_scope(
    engine: EmbeddedPolicyEngine, action: str, scope: str
) -> None:
    path = [*ITEM, action]
    assert (await engine.decide(request("POST", path, [scope]))).allow is True
    others = ["customers:read", "customers:write", "customers:delete", "customers:pii"]
    assert (await engine.decide(request("POST", path, others))).allow is False
    assert (await engine.decide(request("POST", path, [], ("dpo",)))).allow is True


async def test_a_policy_without_visible_statuses_shows_only_active(policies: Path) -> None:
    text = policy_file(policies).read_text()
    policy_file(policies).write_text(text.replace('\t"visible_statuses": visible_statuses,\n', ""))
    engine = EmbeddedPolicyEngine(policies)
    decision = await engine.decide(request("GET", ITEM, ["customers:read", "customers:restricted"]))
    assert decision.allow is True
    assert decision.visible_statuses == {"active"}


@pytest.mark.parametrize("visible", [None, "active", [1], {"active": True}])
def test_malformed_visible_statuses_is_deny(visible: object) -> None:
    result = {"allow": True, "reasons": [], "masked_fields": [], "visible_statuses": visible}
    assert Decision.from_result(result).allow is False


def test_visible_statuses_default_to_active() -> None:
    result = {"allow": True, "reasons": [], "masked_fields": []}
    assert Decision.from_result(result).visible_statuses == {"active"}
    named = Decision.from_result({**result, "visible_statuses": ["active", "closed"]})
    assert named.visible_statuses == {"active", "closed"}
