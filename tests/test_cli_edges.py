"""The command line's rough edges: the name it was run by, --config anywhere, a closed pipe,
`db` on mongomock://, and custom validators from an installed (wheel) `customers-api`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.__main__ import _take_configs, main
from tests.factories import make_cpf

ROOT = Path(__file__).resolve().parents[1]


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_help_names_the_program_as_it_was_run_and_speaks_to_users(tmp_path: Path) -> None:
    module = run(sys.executable, "-m", "service", "--help", cwd=tmp_path)
    assert module.stdout.startswith("usage: python -m service ")
    script = run(str(Path(sys.executable).parent / "customers-api"), "--help", cwd=tmp_path)
    assert script.stdout.startswith("usage: customers-api ")
    assert "Customer registry API" in script.stdout and "`python -m service" not in script.stdout


@pytest.mark.parametrize(
    ("argv", "configs", "rest"),
    [
        (["--config", "a.yaml", "db", "export"], ["a.yaml"], ["db", "export"]),
        (["db", "export", "--config", "a.yaml"], ["a.yaml"], ["db", "export"]),
        (
            ["db", "--config=a.yaml", "export", "--config", "b.yaml"],
            ["a.yaml", "b.yaml"],
            ["db", "export"],
        ),
        (["serve", "--port", "1", "--config", "a.yaml"], ["a.yaml"], ["serve", "--port", "1"]),
    ],
)
def test_config_files_are_taken_in_order_wherever_they_stand(
    argv: list[str], configs: list[str], rest: list[str]
) -> None:
    assert _take_configs(argv) == (configs, rest)


def test_config_after_the_db_subcommand_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("server: {port: nope}\n")
    assert main(["db", "export", "--config", str(config)]) == 2
    assert "server.port" in capsys.readouterr().err
    assert main(["db", "check", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_db_refuses_mongomock(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CUSTOMERS__STORAGE__URL", "mongomock://")
    for command in (["db", "check"], ["db", "export"], ["db", "import"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: storage.url is mongomock://") and "empty store" in err


def stored(n: int) -> dict[str, object]:
    """A line of `db import`: customer `n` with id and timestamps."""
    stamp = "2026-01-01T12:00:00+00:00"
    return {
        "id": f"{n + 1:024x}",
        "name": f"Cliente {n}",
        "email": f"cliente{n}@example.com",
        "phone": "+5511912345678",
        "cpf": make_cpf(300_000_000 + n),
        "address": {
            "cep": "01001000",
            "street": "Praça da Sé",
            "neighborhood": "Sé",
            "city": "São Paulo",
            "state": "SP",
            "number": None,
            "complement": None,
            "source": "offline",
        },
        "created_at": stamp,
        "updated_at": stamp,
    }


def test_export_into_a_pipe_closed_early_ends_quietly(tmp_path: Path) -> None:
    """`db export | head -1`: enough customers to fill the pipe, the reader leaves."""
    env = {**os.environ, "CUSTOMERS__STORAGE__URL": f"sqlite:///{tmp_path / 'c.db'}"}
    env["CUSTOMERS__PII__KEY_FILE"] = str(tmp_path / "pii-key")
    lines = tmp_path / "in.jsonl"
    lines.write_text("".join(json.dumps(stored(n)) + "\n" for n in range(3000)))
    imported = run(
        sys.executable, "-m", "service", "db", "import", str(lines), cwd=tmp_path, env=env
    )
    assert imported.returncode == 0, imported.stderr
    shell = f"set -o pipefail; {sys.executable} -m service db export | head -1"
    piped = subprocess.run(
        ["bash", "-c", shell], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert piped.stdout.count("\n") == 1 and '"email"' in piped.stdout
    assert piped.stderr == "" and piped.returncode == 1  # no traceback, no "Exception ignored"


# --- custom validators (module:Class) from an installed customers-api ---

VALIDATOR = '''
from service.validation.base import Outcome, Validator


class NoExampleOrg(Validator):
    """Refuses addresses at example.org (a stand-in for a company rule)."""

    name = "no_example_org"
    fields = ("email",)

    async def validate(self, values, context):
        if str(values.get("email", "")).endswith("@example.org"):
            return self.error("forbidden_domain", "example.org is not accepted")
        return Outcome()
'''


def _pip(*args: str | Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", *map(str, args)], check=True, timeout=180)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The service's wheel and a wheel of a validator package, both installed (no deps) into
    one folder: an installed `customers-api` whose script does not put the working
    directory on the import path."""
    wheels = tmp_path_factory.mktemp("wheels")
    _pip("wheel", "-q", "--no-deps", "--no-build-isolation", "--wheel-dir", wheels, ROOT)
    package = tmp_path_factory.mktemp("acme")
    (package / "acme_checks").mkdir()
    (package / "acme_checks" / "__init__.py").write_text(VALIDATOR)
    (package / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["hatchling"]
            build-backend = "hatchling.build"
            [project]
            name = "acme-checks"
            version = "1.0"
            [project.entry-points."service.validators"]
            no_example_org = "acme_checks:NoExampleOrg"
            """
        )
    )
    _pip("wheel", "-q", "--no-deps", "--no-build-isolation", "--wheel-dir", wheels, package)
    target = tmp_path_factory.mktemp("site")
    _pip("install", "-q", "--no-deps", "--target", target, *sorted(wheels.glob("*.whl")))
    yield target


def _start_with(site: Path, cwd: Path, use: str) -> subprocess.CompletedProcess[str]:
    """`customers-api serve` with validator `use` on a port already taken: exit 2 with the
    port's message shows the validators loaded (they load before anything listens)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOMERS__")}
    env["PYTHONPATH"] = str(site)
    env["CUSTOMERS__VALIDATORS"] = f"[{{use: email}}, {{use: '{use}'}}]"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        return run(str(site / "bin" / "customers-api"), "serve", "--port", port, cwd=cwd, env=env)


@pytest.mark.parametrize(
    "use", ["local_checks:NoExampleOrg", "acme_checks:NoExampleOrg", "no_example_org"]
)
def test_validators_load_from_the_working_directory_and_from_installed_packages(
    site: Path, tmp_path: Path, use: str
) -> None:
    (tmp_path / "local_checks.py").write_text(VALIDATOR)
    started = _start_with(site, tmp_path, use)
    assert started.returncode == 2
    assert "the port is already in use" in started.stderr, started.stderr


def test_a_validator_module_that_is_nowhere_is_named(site: Path, tmp_path: Path) -> None:
    started = _start_with(site, tmp_path, "local_checks:NoExampleOrg")  # no such file here
    assert started.returncode == 2
    assert "validators[1] (use: local_checks:NoExampleOrg): ModuleNotFoundError" in started.stderr
