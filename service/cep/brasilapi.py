"""BrasilAPI (https://brasilapi.com.br): GET /api/cep/v1/{cep}."""

from __future__ import annotations

import aiohttp

from service.cep.base import Address, ProviderError
from service.cep.http import get_json, text_field, uf_field
from service.settings import HttpProviderSettings


class BrasilApiProvider:
    name = "brasilapi"
    authoritative = True

    def __init__(self, settings: HttpProviderSettings, session: aiohttp.ClientSession) -> None:
        self._base_url = settings.base_url.rstrip("/")
        self._timeout_s = settings.timeout_s
        self._session = session

    async def lookup(self, cep: str) -> Address | None:
        status, data = await get_json(
            self._session, f"{self._base_url}/api/cep/v1/{cep}", self._timeout_s
        )
        if status == 404:
            return None
        if status != 200:
            raise ProviderError(f"HTTP {status}")
        if not isinstance(data, dict):
            raise ProviderError("JSON body is not an object")
        return Address(
            cep=cep,
            street=text_field(data, "street"),
            neighborhood=text_field(data, "neighborhood"),
            city=text_field(data, "city", required=True),
            state=uf_field(data, "state"),
            source=self.name,
        )

    async def close(self) -> None:
        """Nothing to release: the session belongs to the application."""
