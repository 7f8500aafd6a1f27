"""A fake OPA server: answers `POST /v1/data/customers/authz/decision` like OPA's REST API.

By default it evaluates the repository's policy (opa-eval, so the answers are real
decisions) and answers `{"result": <decision>}`. Switches, flipped at any time:
`undefined` (answer `{}`, as OPA does for an undefined rule), `down` (500 with OPA's error
body), `garbage` (200 that is not JSON), `slow` (answer only at server shutdown, i.e. past
any client timeout), `result` (answer this value as the result). `inputs` records the
`input` of each request.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import opa_eval
from aiohttp import web

POLICIES_DIR = Path(__file__).resolve().parents[2] / "policies"
DECISION_ROUTE = "/v1/data/customers/authz/decision"


class FakeOpa:
    def __init__(self, policies_dir: Path = POLICIES_DIR) -> None:
        package_dir = policies_dir / "customers" / "authz"
        data = {"customers": {"authz": json.loads((package_dir / "data.json").read_text())}}
        self._evaluator = opa_eval.OpaEval(
            str(package_dir / "policy.rego"),
            data_json=json.dumps(data),
            query="data.customers.authz.decision",
        )
        self.url = ""  # set by the test once served
        self.undefined = False
        self.down = False
        self.garbage = False
        self.slow = False
        self.result: Any = None
        self.inputs: list[Any] = []
        self._released = asyncio.Event()

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(DECISION_ROUTE, self._decision)
        app.router.add_get("/health", self._health)

        async def on_shutdown(_: web.Application) -> None:
            self._released.set()  # so held handlers end and the server stops promptly

        app.on_shutdown.append(on_shutdown)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        """OPA's GET /health: 200 `{}` once ready; `down` makes it fail like the rest."""
        return web.json_response({}, status=500 if self.down else 200)

    async def _decision(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.inputs.append(body.get("input"))
        if self.slow:
            await self._released.wait()
        if self.down:
            error = {"code": "internal_error", "message": "fake OPA is down"}
            return web.json_response(error, status=500)
        if self.garbage:
            return web.Response(text="<html>proxy error</html>", content_type="text/html")
        if self.undefined:
            return web.json_response({})
        if self.result is not None:
            return web.json_response({"result": self.result})
        decision = self._evaluator.evaluate_parsed(json.dumps(body.get("input")))
        return web.json_response({"result": decision})
