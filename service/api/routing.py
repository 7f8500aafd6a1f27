"""The route template of a request (`/api/v1/customers/{customer_id}`), never its path:
what metrics label, access lines log and the policy input names."""

from __future__ import annotations

from aiohttp.web import AbstractResource, BaseRequest, Request


def route_template(request: BaseRequest) -> str | None:
    """None for a request that matched no route (or never reached the router)."""
    if not isinstance(request, Request):
        return None
    try:
        match_info = request.match_info
    except AssertionError:  # aiohttp's answer for a request that never reached the router
        return None
    if match_info.http_exception is not None:
        return None
    resource = match_info.route.resource
    return resource.canonical if isinstance(resource, AbstractResource) else None
