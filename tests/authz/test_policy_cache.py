"""EmbeddedPolicyEngine's hot path: throttled change checks and the decision cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from service.authz.embedded import EmbeddedPolicyEngine
from tests.authz.inputs import COLLECTION, ITEM, POLICIES_DIR, data_file, request
from tests.fakes import FakeClock


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    return Path(shutil.copytree(POLICIES_DIR, tmp_path / "policies"))


def grant_support_write(policies: Path) -> None:
    data = json.loads(data_file(policies).read_text())
    data["role_scopes"]["support"].append("customers:write")
    data_file(policies).write_text(json.dumps(data))


async def test_an_edit_applies_once_the_check_interval_has_passed(policies: Path) -> None:
    clock = FakeClock(100.0)
    engine = EmbeddedPolicyEngine(policies, check_interval_s=1.0, clock=clock)
    post = request("POST", COLLECTION, [], ("support",))
    assert (await engine.decide(post)).allow is False
    grant_support_write(policies)
    clock.now += 0.5
    assert (await engine.decide(post)).allow is False  # not checked yet
    clock.now += 0.6
    assert (await engine.decide(post)).allow is True


async def test_reload_empties_the_decision_cache_for_every_input(policies: Path) -> None:
    engine = EmbeddedPolicyEngine(policies, check_interval_s=0)
    inputs = [
        request("POST", COLLECTION, [], ("support",)),
        request("PATCH", ITEM, [], ("support",)),
    ]
    for document in inputs * 2:  # the second round is served from the cache
        assert (await engine.decide(document)).allow is False
    grant_support_write(policies)
    for document in inputs:
        assert (await engine.decide(document)).allow is True


async def test_cache_is_bounded_and_keeps_answers_exact(policies: Path) -> None:
    engine = EmbeddedPolicyEngine(policies, max_cached=2)
    documents = [
        (request("GET", ["api", "v1", "customers", f"c-{i}"], scopes), expected)
        for i in range(5)
        for scopes, expected in ((["customers:read"], True), (["customers:write"], False))
    ]
    for document, expected in documents * 2:
        assert (await engine.decide(document)).allow is expected
    assert len(engine._decisions) == 2
