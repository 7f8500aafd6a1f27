"""ViaCEP (https://viacep.com.br): GET /ws/{cep}/json/."""

from __future__ import annotations

from service.cep.base import Address, ProviderError
from service.cep.http import HttpProvider, text_field, uf_field


class ViaCepProvider(HttpProvider):
    name = "viacep"

    async def lookup(self, cep: str) -> Address | None:
        status, data = await self.get_json(f"/ws/{cep}/json/")
        if status == 400:  # ViaCEP's answer to a malformed CEP: it cannot exist
            return None
        if status != 200 or data is None:
            raise ProviderError(f"HTTP {status}")
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
