"""The one way the HTTP providers call out: the shared session, a per-provider timeout."""

from __future__ import annotations

import json

import aiohttp

from service.cep.base import ProviderError
from service.settings import HttpProviderSettings


class HttpProvider:
    """What the HTTP providers share: base URL, timeout, the application's session."""

    name: str
    authoritative = True

    def __init__(self, settings: HttpProviderSettings, session: aiohttp.ClientSession) -> None:
        self._base_url = settings.base_url.rstrip("/")
        self._timeout_s = settings.timeout_s
        self._session = session

    async def get_json(self, path: str) -> tuple[int, dict[str, object] | None]:
        """GET base_url + path: (status, JSON object body for a 200, else None).

        Network errors, timeouts and a 200 whose body is not a JSON object raise
        ProviderError; the provider decides what every other status means.
        """
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        headers = {"Accept": "application/json"}  # User-Agent: the session's (service.http)
        try:
            async with self._session.get(
                self._base_url + path, timeout=timeout, headers=headers
            ) as resp:
                if resp.status != 200:
                    return resp.status, None
                data = await resp.json(content_type=None)
        except TimeoutError:
            raise ProviderError(f"no answer within {self._timeout_s:g}s") from None
        except aiohttp.ClientError as exc:
            raise ProviderError(f"{type(exc).__name__}: {exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ProviderError("200 with a body that is not JSON") from None
        if not isinstance(data, dict):
            raise ProviderError("JSON body is not an object")
        return 200, data

    async def close(self) -> None:
        """Nothing to release: the session belongs to the application."""


def text_field(data: dict[str, object], key: str, *, required: bool = False) -> str:
    """A string field of a provider's JSON; missing or null counts as empty unless required."""
    value = data.get(key)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ProviderError(f"field {key!r} is not a string")
    if required and not value.strip():
        raise ProviderError(f"field {key!r} is missing")
    return value.strip()


def uf_field(data: dict[str, object], key: str) -> str:
    """The two-letter state (UF); anything else means the answer is not usable."""
    value = text_field(data, key).upper()
    if len(value) != 2 or not value.isascii() or not value.isalpha():
        raise ProviderError(f"field {key!r} is not a state code")
    return value
