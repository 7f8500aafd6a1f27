"""Runs the `*_test.rego` files as `opa test` does, on the embedded engine (tests only)."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from service.authz.rego import (
    PACKAGE_RE,
    PolicyLoadError,
    evaluate_in_child,
    join_module,
    load_data,
    policy_files,
    read_text,
)


def package_of(source: str) -> str:
    return next(m.group(1) for line in source.splitlines() if (m := PACKAGE_RE.match(line)))


@dataclass(frozen=True)
class PolicyTestResult:
    name: str
    passed: bool
    message: str


_TEST_RULE_RE = re.compile(r"^(test_\w+)\b", re.MULTILINE)


def run_policy_tests(policies_dir: Path) -> list[PolicyTestResult]:
    """Run every `test_*` rule of every `*_test.rego` under policies_dir, as `opa test` does.

    A test passes only when its rule is `true`; false, undefined or an error fail it. The
    test file is joined with the other `.rego` files of its directory (same package).
    """
    data_json = json.dumps(load_data(policies_dir))
    results: list[PolicyTestResult] = []
    for test_file in sorted(policies_dir.rglob("*_test.rego")):
        directory = test_file.parent
        module = join_module([*policy_files(directory), test_file])
        package = package_of(module.source)
        names = list(dict.fromkeys(_TEST_RULE_RE.findall(read_text(test_file))))
        queries = [f"data.{package}.{name}" for name in names]
        label = test_file.relative_to(policies_dir)
        with tempfile.TemporaryDirectory(prefix="policy-test-") as tmp:
            module_path = os.path.join(tmp, "module.rego")
            Path(module_path).write_text(module.source, encoding="utf-8")
            try:
                outcome = evaluate_in_child(module, module_path, data_json, queries, "{}")
            except PolicyLoadError as exc:
                outcome = {query: (False, str(exc)) for query in queries}
        for name, query in zip(names, queries, strict=True):
            ok, value = outcome[query]
            if not ok:
                results.append(PolicyTestResult(f"{label}::{name}", False, str(value)))
            elif value is True:
                results.append(PolicyTestResult(f"{label}::{name}", True, "passed"))
            else:
                why = "undefined" if value == "<undefined>" else f"got {json.dumps(value)}"
                results.append(PolicyTestResult(f"{label}::{name}", False, why))
    return results
