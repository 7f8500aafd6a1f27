"""BrasilAPI (https://brasilapi.com.br): GET /api/cep/v1/{cep}."""

from __future__ import annotations

from service.cep.base import Address, ProviderError
from service.cep.http import HttpProvider, text_field, uf_field


class BrasilApiProvider(HttpProvider):
    name = "brasilapi"

    async def lookup(self, cep: str) -> Address | None:
        status, data = await self.get_json(f"/api/cep/v1/{cep}")
        if status == 404:
            return None
        if status != 200 or data is None:
            raise ProviderError(f"HTTP {status}")
        return Address(
            cep=cep,
            street=text_field(data, "street"),
            neighborhood=text_field(data, "neighborhood"),
            city=text_field(data, "city", required=True),
            state=uf_field(data, "state"),
            source=self.name,
        )
