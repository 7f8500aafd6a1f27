"""The CLI as scripts use it: `python -m service serve|token`."""

import asyncio
import os
import shutil
import sys
from pathlib import Path

import aiohttp
import pytest

from service.__main__ import main
from service.auth.jwt import build_token_verifier
from service.settings import load_settings
from tests.fakes import free_port


@pytest.fixture
def local_config(tmp_path):
    config = tmp_path / "local.yaml"
    config.write_text(f"auth:\n  local_issuer: {{key_file: {tmp_path / 'key.pem'}}}\n")
    return config


async def test_token_prints_a_jwt_the_server_with_that_config_accepts(local_config, capsys):
    argv = [
        "token",
        "--sub",
        "ana",
        "--scope",
        "customers:read customers:pii",
        "--roles",
        "support,dpo",
        "--ttl",
        "120",
        "--config",
        str(local_config),
    ]
    assert main(argv) == 0
    token = capsys.readouterr().out.strip()
    settings = load_settings([local_config], environ={})
    async with aiohttp.ClientSession() as session:
        principal = await build_token_verifier(settings, session).authenticate(f"Bearer {token}")
    assert principal.subject == "ana"
    assert principal.scopes == {"customers:read", "customers:pii"}
    assert principal.roles == {"support", "dpo"}


def test_token_refuses_without_a_local_issuer(tmp_path, capsys):
    config = tmp_path / "idp.yaml"
    config.write_text("auth: {local_issuer: {enabled: false}, jwks_url: https://idp/jwks}\n")
    assert main(["token", "--sub", "ana", "--config", str(config)]) == 2
    assert "local_issuer" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["--sub", "ana", "--ttl", "0"],
        ["--sub", "ana", "--ttl", "-5"],
        ["--sub", "ana", "--ttl", "soon"],
        ["--sub", " "],
        [],
    ],
)
def test_token_refuses_bad_arguments(args, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["token", *args])
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_serve_refuses_a_bad_config_naming_file_and_key(tmp_path, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text("storage: {ulr: mongodb://db}\n")
    assert main(["serve", "--config", str(config)]) == 2
    assert f"{config}: invalid configuration: storage.ulr: Unknown field" in capsys.readouterr().err


def test_serve_refuses_the_local_issuer_on_a_public_host(local_config, capsys):
    assert main(["serve", "--config", str(local_config), "--host", "0.0.0.0"]) == 2
    assert "allow_public" in capsys.readouterr().err


def test_serve_refuses_a_validator_that_does_not_load(local_config, monkeypatch, capsys):
    monkeypatch.setenv("CUSTOMERS__VALIDATORS", "[{use: email}, {use: cpff}]")
    assert main(["serve", "--config", str(local_config)]) == 2
    assert "validators[1] (use: cpff)" in capsys.readouterr().err


def test_serve_refuses_a_policy_that_does_not_compile(local_config, tmp_path, capsys):
    policies = tmp_path / "policies"
    shutil.copytree(Path(__file__).resolve().parents[1] / "policies", policies)
    rules = policies / "customers" / "authz" / "policy.rego"
    rules.write_text(rules.read_text() + "\nallow if {\n")
    config = tmp_path / "authz.yaml"
    config.write_text(f"authz: {{policies_dir: {policies}}}\n")
    assert main(["serve", "--config", str(local_config), "--config", str(config)]) == 2
    captured = capsys.readouterr()
    assert f"{rules}" in captured.err
    assert "customers-api on" not in captured.out  # no banner: it never listened


def test_serve_exits_1_when_mongodb_is_down_at_start(local_config, monkeypatch, capsys):
    monkeypatch.setenv("CUSTOMERS__STORAGE__URL", "mongodb://user:secret@127.0.0.1:1")
    assert main(["serve", "--config", str(local_config)]) == 1
    captured = capsys.readouterr()
    assert "storage.url: no database answers at mongodb://127.0.0.1:1" in captured.err
    assert "secret" not in captured.err
    assert "Traceback" not in captured.err and "customers-api on" not in captured.out


async def _start_server(config: Path, port: int, cwd: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "CUSTOMERS__CEP__VIACEP__BASE_URL": "http://127.0.0.1:1"}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "service", "serve", "--config", str(config), "--port", str(port)),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(100):  # the banner is printed just before the socket opens
        try:
            async with session.get(f"{base}/health/ready") as ready:
                if ready.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.1)


async def _stop(server: asyncio.subprocess.Process) -> str:
    server.terminate()
    assert await server.wait() == 0  # SIGTERM is a graceful shutdown
    assert server.stdout is not None
    return (await server.stdout.read()).decode()


async def test_serve_runs_the_embedded_profile_end_to_end(local_config, tmp_path):
    """What the README shows: start the server, get a token, register, read back; stop and
    start again: the customer is still there (the SQLite file under the working directory)."""
    port = free_port()
    server = await _start_server(local_config, port, cwd=tmp_path)
    try:
        assert server.stdout is not None
        banner = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
        while banner.startswith("{"):  # log lines of start-up come first
            banner = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
        digest_line = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
        assert "serving with policy digest sha256:" in digest_line  # which policy decides
        data_file = tmp_path / "var" / "customers.db"
        assert "embedded profile" in banner and str(data_file) in banner
        token = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "service", "token", "--sub", "ana", "--config", str(local_config)),
            *("--scope", "customers:read customers:write customers:pii"),
            stdout=asyncio.subprocess.PIPE,
        )
        jwt_text = (await token.communicate())[0].decode().strip()
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {jwt_text}"}
        async with aiohttp.ClientSession() as session:
            await _wait_ready(session, base)
            body = {
                "name": "Maria da Silva",
                "email": "maria@example.com",
                "phone": "(11) 91234-5678",
                "cep": "01001-000",
                "cpf": "529.982.247-25",
            }
            async with session.post(
                f"{base}/api/v1/customers", json=body, headers=headers
            ) as created:
                assert created.status == 201
                location = created.headers["Location"]
                registered = await created.json()
                assert registered["address"]["source"] == "offline"
            async with session.get(base + location, headers=headers) as fetched:
                assert (await fetched.json())["cpf"] == "52998224725"
            async with session.get(base + location) as anonymous:
                assert anonymous.status == 401
            async with session.get(
                f"{base}/api/v1/customers", params={"cpf": "52998224725"}, headers=headers
            ) as found:
                assert len((await found.json())["data"]) == 1
    finally:
        log = await _stop(server)
    assert '"message": "GET /api/v1/customers 200 ' in log
    assert "52998224725" not in log  # access log lines carry no query strings
    assert data_file.is_file()

    restarted = await _start_server(local_config, port, cwd=tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_ready(session, base)
            async with session.get(base + location, headers=headers) as again:
                assert again.status == 200
                assert await again.json() == registered
    finally:
        await _stop(restarted)
