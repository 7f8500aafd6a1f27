"""The floor: a bare aiohttp handler doing only what no GET by id of this design can skip.

The work of benchmarks/bare_get.py (the bearer token's claims from a dict, the SQLite point
read, the CPF's decryption, orjson), on uvloop as `serve` runs. No policy, masking, audit
trail, access log, metrics, request ids or problem details: the distance from the ceiling
to this row is what the storage read and the decryption cost on this machine, and the
distance from this row to the service's is what every feature the contract asks for costs
on top.

    python benchmarks/floor.py --config FILE --port 8083
"""

from __future__ import annotations

import uvloop
from aiohttp import hdrs, web
from bare_get import BareGet, command_line

JSON = "application/json"


def create_app(config: str) -> web.Application:
    work = BareGet(config)

    async def get_one(request: web.Request) -> web.Response:
        if work.claims(request.headers.get(hdrs.AUTHORIZATION)) is None:
            raise web.HTTPUnauthorized()
        body = work.customer(request.match_info["customer_id"])
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type=JSON)

    async def live(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=JSON)

    app = web.Application()
    app.router.add_get("/health/live", live)
    app.router.add_get("/api/v1/customers/{customer_id}", get_one)
    return app


if __name__ == "__main__":
    args = command_line(__doc__.splitlines()[0])
    web.run_app(
        create_app(args.config),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )
