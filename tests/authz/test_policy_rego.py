"""Every `test_*` rule of every `*_test.rego` under policies/ is one pytest case here."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from service.authz.rego import PolicyLoadError
from tests.authz.rego_runner import PolicyTestResult, run_policy_tests

POLICIES_DIR = Path(__file__).resolve().parents[2] / "policies"

RESULTS = run_policy_tests(POLICIES_DIR)


def test_rego_tests_are_found() -> None:
    files = {result.name.split("::")[0] for result in RESULTS}
    assert files == {"customers/authz/policy_test.rego", "system/log/mask_test.rego"}


@pytest.mark.parametrize("result", RESULTS, ids=[result.name for result in RESULTS])
def test_rego(result: PolicyTestResult) -> None:
    assert result.passed, result.message


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A copy of policies/ that a test may edit."""
    return Path(shutil.copytree(POLICIES_DIR, tmp_path / "policies"))


def by_name(results: list[PolicyTestResult]) -> dict[str, PolicyTestResult]:
    return {result.name.split("::")[1]: result for result in results}


def test_failing_rego_test_is_reported(policies: Path) -> None:
    test_file = policies / "customers" / "authz" / "policy_test.rego"
    with test_file.open("a") as f:
        f.write('\ntest_fails if allowed("DELETE", item, ["customers:read"], [])\n')
        f.write("\ntest_undefined if input.nothing\n")
    results = by_name(run_policy_tests(policies))
    assert results["test_fails"].passed is False
    assert results["test_undefined"] == PolicyTestResult(
        "customers/authz/policy_test.rego::test_undefined", False, "undefined"
    )
    assert results["test_get_with_read"].passed is True


def test_policy_change_fails_its_tests(policies: Path) -> None:
    policy = policies / "customers" / "authz" / "policy.rego"
    text = policy.read_text()
    policy.write_text(text.replace('"customers:delete" if {', '"customers:write" if {'))
    results = by_name(run_policy_tests(policies))
    assert results["test_delete_with_delete"].passed is False
    assert results["test_list_with_read"].passed is True


def test_syntax_error_fails_every_test_of_the_file_and_names_it(policies: Path) -> None:
    test_file = policies / "customers" / "authz" / "policy_test.rego"
    with test_file.open("a") as f:
        f.write("\ntest_broken if { 1 + }\n")
    results = [r for r in run_policy_tests(policies) if r.name.startswith("customers/")]
    assert results and not any(result.passed for result in results)
    assert f"{test_file}:" in results[0].message
    mask_results = [r for r in run_policy_tests(policies) if r.name.startswith("system/")]
    assert all(result.passed for result in mask_results)


def test_test_file_in_another_package_is_refused(policies: Path) -> None:
    test_file = policies / "customers" / "authz" / "policy_test.rego"
    test_file.write_text(test_file.read_text().replace("package customers.authz", "package x"))
    with pytest.raises(PolicyLoadError, match="one package per directory"):
        run_policy_tests(policies)
