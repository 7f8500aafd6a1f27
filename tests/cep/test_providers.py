from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from service import USER_AGENT
from service.cep.base import Address, ProviderError
from service.cep.brasilapi import BrasilApiProvider
from service.cep.offline import OfflineProvider, resolve_db_path
from service.cep.viacep import ViaCepProvider
from service.settings import HttpProviderSettings, OfflineProviderSettings
from tests.cep.conftest import TIMEOUT_S
from tests.fakes import MISSING_CEP, FakeBrasilApi, FakeViaCep, free_port, serve

SE = Address("01001000", "Praça da Sé", "Sé", "São Paulo", "SP", "viacep")


def viacep_provider(base_url: str, session: aiohttp.ClientSession, timeout_s: float = TIMEOUT_S):
    return ViaCepProvider(HttpProviderSettings(base_url, timeout_s), session)


# --- ViaCEP ---


async def test_viacep_maps_the_fields_and_sends_a_user_agent(viacep: FakeViaCep, session) -> None:
    provider = viacep_provider(viacep.base_url, session)
    assert await provider.lookup("01001000") == SE
    assert viacep.user_agents == [USER_AGENT]


@pytest.mark.parametrize("erro_as_bool", [False, True], ids=["erro-string", "erro-bool"])
async def test_viacep_erro_means_not_found(aiohttp_server, session, erro_as_bool: bool) -> None:
    fake = FakeViaCep(erro_as_bool=erro_as_bool)
    await serve(aiohttp_server, fake)
    assert await viacep_provider(fake.base_url, session).lookup(MISSING_CEP) is None
    assert fake.calls == 1


async def test_viacep_400_means_not_found(viacep: FakeViaCep, session) -> None:
    assert await viacep_provider(viacep.base_url, session).lookup("0100100") is None
    assert viacep.calls == 1


async def test_viacep_down_is_a_provider_error(viacep: FakeViaCep, session) -> None:
    viacep.down = True
    with pytest.raises(ProviderError, match="500"):
        await viacep_provider(viacep.base_url, session).lookup("01001000")


async def test_viacep_too_slow_is_a_provider_error(viacep: FakeViaCep, session) -> None:
    viacep.slow = True
    with pytest.raises(ProviderError, match="no answer within"):
        await viacep_provider(viacep.base_url, session, timeout_s=0.1).lookup("01001000")


async def test_connection_refused_is_a_provider_error(session) -> None:
    provider = viacep_provider(f"http://127.0.0.1:{free_port()}", session)
    with pytest.raises(ProviderError):
        await provider.lookup("01001000")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<html>maintenance</html>", "text/html"),
        ('["not", "an", "object"]', "application/json"),
        ('{"localidade": "São Paulo", "uf": "São Paulo"}', "application/json"),  # uf not a UF
        ('{"logradouro": "Praça da Sé", "uf": "SP"}', "application/json"),  # no city
        ('{"localidade": "São Paulo", "uf": "SP", "bairro": 12}', "application/json"),
    ],
)
async def test_viacep_unusable_200_is_a_provider_error(
    aiohttp_raw_server, session, body: str, content_type: str
) -> None:
    async def handler(request: web.BaseRequest) -> web.Response:
        return web.Response(text=body, content_type=content_type)

    server = await aiohttp_raw_server(handler)
    provider = viacep_provider(str(server.make_url("/")), session)
    with pytest.raises(ProviderError):
        await provider.lookup("01001000")


async def test_viacep_429_is_a_provider_error(aiohttp_raw_server, session) -> None:
    async def handler(request: web.BaseRequest) -> web.Response:
        return web.Response(status=429)

    server = await aiohttp_raw_server(handler)
    with pytest.raises(ProviderError, match="429"):
        await viacep_provider(str(server.make_url("/")), session).lookup("01001000")


# --- BrasilAPI ---


async def test_brasilapi_found_missing_and_down(brasilapi: FakeBrasilApi, session) -> None:
    provider = BrasilApiProvider(HttpProviderSettings(brasilapi.base_url, TIMEOUT_S), session)
    assert await provider.lookup("01001000") == Address(
        "01001000", "Praça da Sé", "Sé", "São Paulo", "SP", "brasilapi"
    )
    assert await provider.lookup(MISSING_CEP) is None
    brasilapi.down = True
    with pytest.raises(ProviderError, match="500"):
        await provider.lookup("01001000")
    assert brasilapi.calls == 3
    assert set(brasilapi.user_agents) == {USER_AGENT}


# --- offline (CEP Aberto) ---


async def test_offline_real_directory_hit_and_miss(tmp_path: Path) -> None:
    provider = OfflineProvider(resolve_db_path(OfflineProviderSettings(None), tmp_path))
    try:
        assert await provider.lookup("01001000") == Address(
            "01001000", "Praça da Sé", "Sé", "São Paulo", "SP", "offline"
        )
        assert await provider.lookup(MISSING_CEP) is None
        assert provider.authoritative is False
    finally:
        await provider.close()


async def test_offline_relative_db_path_is_taken_from_base_dir(tiny_db: Path) -> None:
    path = resolve_db_path(OfflineProviderSettings(tiny_db.name), tiny_db.parent)
    assert path == tiny_db
    provider = OfflineProvider(path)
    try:
        address = await provider.lookup("20040020")
        assert address == Address(
            "20040020", "Praça Pio X", "Centro", "Rio de Janeiro", "RJ", "offline"
        )
        assert await provider.lookup("01001000") is None
    finally:
        await provider.close()


async def test_offline_after_close_is_a_provider_error(tiny_db: Path) -> None:
    provider = OfflineProvider(tiny_db)
    await provider.close()
    with pytest.raises(ProviderError):
        await provider.lookup("20040020")


def test_offline_missing_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cep\.offline\.db_path.*nope\.sqlite"):
        OfflineProvider(tmp_path / "nope.sqlite")


def test_offline_file_that_is_not_a_directory_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match=r"cep\.offline\.db_path"):
        OfflineProvider(path)


def test_offline_opens_read_only(tiny_db: Path) -> None:
    provider = OfflineProvider(tiny_db)
    try:
        with pytest.raises(Exception, match="readonly"):
            provider._conn.execute("DELETE FROM ceps")
    finally:
        provider._conn.close()
