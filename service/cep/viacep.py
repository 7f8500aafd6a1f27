"""ViaCEP (https://viacep.com.br): GET /ws/{cep}/json/."""

from __future__ import annotations

import aiohttp

from service.cep.base import Address, ProviderError
from service.cep.http import get_json, text_field, uf_field
from service.settings import HttpProviderSettings


class ViaCepProvider:
    name = "viacep"
    authoritative = True

    def __init__(self, settings: HttpProviderSettings, session: aiohttp.ClientSession) -> None:
        self._base_url = settings.base_url.rstrip("/")
        self._timeout_s = settings.timeout_s
        self._session = session

    async def lookup(self, cep: str) -> Address | None:
        status, data = await get_json(
            self._session, f"{self._base_url}/ws/{cep}/json/", self._timeout_s
        )
        if status == 400:  # ViaCEP's answer to a malformed CEP: it cannot exist
            return None
        if status != 200:
            raise ProviderError(f"HTTP {status}")
        if not isinstance(data, dict):
            raise ProviderError("JSON body is not an object")
        # A CEP that does not exist: {"erro": true}, or {"erro": "true"} on some versions.
        if data.get("erro") in (True, "true"):
            return None
        return Address(
            cep=cep,
            street=text_field(data, "logradouro"),
            neighborhood=text_field(data, "bairro"),
            city=text_field(data, "localidade", required=True),
            state=uf_field(data, "uf"),
            source=self.name,
        )

    async def close(self) -> None:
        """Nothing to release: the session belongs to the application."""
