"""The HTTP client session every outgoing call shares (CEP providers, JWKS, OPA)."""

from __future__ import annotations

import aiohttp

from service import USER_AGENT


def client_session() -> aiohttp.ClientSession:
    """Our User-Agent on every request (providers ask callers to identify themselves) and a
    5 s ceiling; each caller sets its own shorter timeout per request."""
    return aiohttp.ClientSession(
        headers={"User-Agent": USER_AGENT}, timeout=aiohttp.ClientTimeout(total=5)
    )
