"""The one way the HTTP providers call out: shared session, per-provider timeout, User-Agent."""

from __future__ import annotations

import json

import aiohttp

from service import USER_AGENT
from service.cep.base import ProviderError


async def get_json(
    session: aiohttp.ClientSession, url: str, timeout_s: float
) -> tuple[int, object | None]:
    """GET `url`: (status, parsed JSON body for a 200, else None).

    Network errors, timeouts and a 200 whose body is not JSON raise ProviderError;
    the caller decides what every other status means.
    """
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    try:
        async with session.get(url, timeout=timeout, headers=headers) as resp:
            if resp.status != 200:
                return resp.status, None
            return 200, await resp.json(content_type=None)
    except TimeoutError:
        raise ProviderError(f"no answer within {timeout_s:g}s") from None
    except aiohttp.ClientError as exc:
        raise ProviderError(f"{type(exc).__name__}: {exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProviderError("200 with a body that is not JSON") from None


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
