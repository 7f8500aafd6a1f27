"""The rate-limit middleware: who the caller is, which bucket pays, the RateLimit-* headers.

Order in the chain: problem > ratelimit > security > parsing. The caller is the token's
subject when the token is valid (authenticated once per request, shared with the security
middleware), otherwise the client address: garbage tokens and anonymous calls pay too, and
they pay before any policy, validator or database call. Probes, docs and metrics are never
limited (`is_public`).

The client address is the TCP peer. `X-Forwarded-For` is read only from peers listed in
`ratelimit.trusted_proxies`, right to left, stopping at the first hop that is not a trusted
proxy (anything left of it can be forged by the client). IPv6 clients are bucketed by /64,
the block one subscriber usually gets, so rotating addresses inside it does not help.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from service.api.security import authenticate, is_public
from service.errors import Problem, RateLimited, ServiceUnavailable
from service.typedefs import metrics_key, rate_limit_verdict_key, rate_limiter_key, settings_key

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(text: str | None) -> IpAddress | None:
    try:
        address = ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(request: web.Request, trusted_proxies: Sequence[Network]) -> str:
    """The client's bucket name: an IPv4 address or an IPv6 /64 (`unknown` without a peer)."""
    address = _ip(request.remote)
    if address is None:
        return "unknown"
    hops = [
        hop
        for value in request.headers.getall(hdrs.X_FORWARDED_FOR, [])
        for hop in value.split(",")
    ]
    for hop in reversed(hops):
        if not any(address in network for network in trusted_proxies):
            break
        forwarded = _ip(hop)
        if forwarded is None:
            break
        address = forwarded
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


async def caller_key(request: web.Request, trusted_proxies: Sequence[Network]) -> str:
    if request.match_info.http_exception is None:  # unrouted paths: no authentication at all
        try:
            return "sub:" + (await authenticate(request)).subject
        except (Problem, ServiceUnavailable):
            pass  # the security middleware answers it (401/503); this caller pays by address
    return "addr:" + client_address(request, trusted_proxies)


@functools.cache
def trusted_networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


@web.middleware
async def ratelimit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if is_public(request.path):
        return await handler(request)
    trusted = trusted_networks(request.app[settings_key].ratelimit.trusted_proxies)
    caller = await caller_key(request, trusted)
    verdict = await request.app[rate_limiter_key].take(caller)
    request[rate_limit_verdict_key] = verdict
    if not verdict.allowed:
        kind = "subject" if caller.startswith("sub:") else "address"
        request.app[metrics_key].rate_limited.labels(kind).inc()
        raise RateLimited(
            f"This caller is over its rate limit ({verdict.rate_per_s:g} requests/s, "
            f"bursts of {verdict.limit}); retry after {verdict.retry_after_s}s.",
            retry_after_s=verdict.retry_after_s,
        )
    return await handler(request)


async def add_ratelimit_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """on_response_prepare: every limited response, errors included, says where it stands."""
    verdict = request.get(rate_limit_verdict_key)
    if verdict is not None:
        response.headers.update(verdict.headers())
