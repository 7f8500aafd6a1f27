"""The package installs anywhere: the wheel, installed apart from the source tree, started
from an empty directory, runs the embedded profile on its packaged config and policies.

No network: the wheel is built with the build backend of the test venv
(--no-build-isolation) and installed without dependencies into a folder put first on
PYTHONPATH; the test venv's interpreter supplies the dependencies.
"""

import asyncio
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp
import pytest

import service
from service import settings as settings_module
from service.settings import load_settings
from tests.fakes import free_port

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = {
    "config/default.yaml": "service/_data/config/default.yaml",
    "config/compose.yaml": "service/_data/config/compose.yaml",
    "policies/customers/authz/policy.rego": "service/_data/policies/customers/authz/policy.rego",
    "policies/customers/authz/data.json": "service/_data/policies/customers/authz/data.json",
    "policies/system/log/mask.rego": "service/_data/policies/system/log/mask.rego",
}


def _pip(*args: str | Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", *map(str, args)], check=True, timeout=120)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    _pip("wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", out, ROOT)
    (built,) = out.glob("customers_api-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    _pip("install", "--quiet", "--no-deps", "--target", target, wheel)
    return target


@pytest.fixture
def run_env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOMERS__")}
    env["PYTHONPATH"] = str(site)
    env["CUSTOMERS__CEP__VIACEP__BASE_URL"] = "http://127.0.0.1:1"  # never the internet
    return env


def test_the_wheel_carries_the_current_config_and_policies(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for source, packaged in PACKAGED.items():
            assert archive.read(packaged) == (ROOT / source).read_bytes(), packaged
        assert not [name for name in archive.namelist() if name.startswith("tests/")]


def test_the_version_is_written_once_and_reported_by_both_entry_points(
    site: Path, run_env: dict[str, str], tmp_path: Path
) -> None:
    (dist_info,) = site.glob("customers_api-*.dist-info")
    metadata = (dist_info / "METADATA").read_text()
    assert f"\nVersion: {service.__version__}\n" in metadata
    for command in ([str(site / "bin" / "customers-api")], [sys.executable, "-m", "service"]):
        done = subprocess.run(
            [*command, "--version"], env=run_env, cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"customers-api {service.__version__}"


def test_the_installed_package_is_imported_not_the_source_tree(
    site: Path, run_env: dict[str, str], tmp_path: Path
) -> None:
    code = (
        "import service, service.settings as s; "
        "print(service.__file__); print(s.DEFAULT_CONFIG); print(s.DEFAULT_POLICIES)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=run_env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    for line in done.stdout.split():
        assert Path(line).is_relative_to(site / "service"), line
        assert Path(line).exists(), line


async def test_serve_from_an_empty_directory_accepts_a_token_of_the_cli(
    site: Path, run_env: dict[str, str], tmp_path: Path
) -> None:
    script = str(site / "bin" / "customers-api")
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        script,
        "serve",
        "--port",
        str(port),
        cwd=tmp_path,
        env=run_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert server.stdout is not None
        banner = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
        while banner.startswith("{"):  # log lines of start-up (the policy digest) come first
            banner = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
        assert f"customers-api on http://127.0.0.1:{port}" in banner, banner
        token = await asyncio.create_subprocess_exec(
            script,
            "token",
            "--sub",
            "ana",
            "--scope",
            "customers:read",
            cwd=tmp_path,
            env=run_env,
            stdout=asyncio.subprocess.PIPE,
        )
        jwt_text = (await token.communicate())[0].decode().strip()
        assert token.returncode == 0
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/health/live") as live:
                assert live.status == 200
            headers = {"Authorization": f"Bearer {jwt_text}"}
            async with session.get(f"{base}/api/v1/customers", headers=headers) as listed:
                assert listed.status == 200
                assert (await listed.json())["data"] == []
            async with session.get(f"{base}/api/v1/customers") as anonymous:
                assert anonymous.status == 401
    finally:
        server.terminate()
        assert await server.wait() == 0
    # The relative key_file of config/default.yaml was taken from the working directory.
    assert (tmp_path / ".local" / "issuer-key.pem").is_file()


def test_a_checkout_reads_the_top_level_folders() -> None:
    """Editable install and `make run`: what the security team and operators edit applies."""
    assert Path(service.__file__).is_relative_to(ROOT)
    assert settings_module.DEFAULT_CONFIG == ROOT / "config" / "default.yaml"
    assert settings_module.DEFAULT_POLICIES == ROOT / "policies"


def test_relative_paths_resolve_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules").mkdir()  # the loader checks the folder is there
    settings = load_settings(environ={"CUSTOMERS__AUTHZ__POLICIES_DIR": "rules"})
    assert settings.path(settings.auth.local_issuer.key_file) == tmp_path / ".local/issuer-key.pem"
    assert settings.path(settings.authz.policies_dir) == tmp_path / "rules"
    assert settings.path("/srv/absolute.db") == Path("/srv/absolute.db")


def test_policies_dir_unset_or_null_is_the_packaged_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no policies/ here: the default must not depend on the cwd
    for environ in ({}, {"CUSTOMERS__AUTHZ__POLICIES_DIR": "null"}):
        settings = load_settings(environ=environ)
        assert settings.path(settings.authz.policies_dir) == settings_module.DEFAULT_POLICIES
