"""The embedded engine: opa-eval (regorus, Rust) in-process, reloading when a file changes.

A decision of the default policy, change check included, takes about 0.15 ms
(benchmarks/policy.py), so it runs on the event loop: a worker thread would add more
latency than the loop time it frees.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import opa_eval

from service.authz.decision import Decision, PolicyEngineError, parse_decision
from service.authz.rego import (
    PolicyLoadError,
    evaluate_in_child,
    join_module,
    load_data,
    policy_files,
)

log = logging.getLogger(__name__)

PACKAGE_DIR = Path("customers", "authz")
DECISION_QUERY = "data.customers.authz.decision"
# The input evaluated in the child process before a policy is loaded.
_SAMPLE_INPUT: Mapping[str, Any] = {
    "method": "GET",
    "path": ["api", "v1", "customers", "c-1"],
    "principal": {"sub": "policy-check", "scopes": ["customers:read"], "roles": []},
    "resource": {"kind": "customer", "id": "c-1"},
}


def load_evaluator(policies_dir: Path) -> opa_eval.OpaEval:
    """Check the decision module in a child process, then load it here."""
    module = join_module(policy_files(policies_dir / PACKAGE_DIR))
    data_json = json.dumps(load_data(policies_dir))
    with tempfile.TemporaryDirectory(prefix="policy-") as tmp:
        module_path = os.path.join(tmp, "customers.authz.rego")
        Path(module_path).write_text(module.source, encoding="utf-8")
        result = evaluate_in_child(
            module, module_path, data_json, [DECISION_QUERY], json.dumps(_SAMPLE_INPUT)
        )
        ok, value = result[DECISION_QUERY]
        where = ", ".join(str(path) for _, path in module.segments)
        if not ok:
            raise PolicyLoadError(f"{where}: {value}")
        if parse_decision(value) is None:
            raise PolicyLoadError(
                f"{where}: `decision` must be an object with allow, reasons and masked_fields, "
                f"got {json.dumps(value)[:200]}"
            )
        try:
            return opa_eval.OpaEval(module_path, data_json=data_json, query=DECISION_QUERY)
        except RuntimeError as exc:
            raise PolicyLoadError(f"{where}: {module.locate(str(exc), module_path)}") from None


_Stat = tuple[str, int, int, int]


def _watched_paths(policies_dir: Path) -> list[str]:
    """The directories and the .rego/.json files under policies_dir.

    A file added, removed or renamed changes its directory's mtime, so stat-ing this list
    notices every change until the next full walk (done after each change).
    """
    paths = []
    for root, _, names in os.walk(policies_dir):
        paths.append(root)
        paths.extend(os.path.join(root, n) for n in names if n.endswith((".rego", ".json")))
    return paths


def _stats(paths: list[str]) -> tuple[_Stat, ...]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((path, -1, -1, -1))
        else:
            out.append((path, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class EmbeddedPolicyEngine:
    """opa-eval in-process; reloads on the first decision after a file under policies_dir
    changes. A bad edit keeps the last good policy (and logs why); a bad policy at start
    raises PolicyLoadError, so the app refuses to start.
    """

    def __init__(self, policies_dir: Path) -> None:
        self._dir = policies_dir
        self._watched = _watched_paths(policies_dir)
        self._seen = _stats(self._watched)
        self._evaluator = load_evaluator(policies_dir)
        self._reload_lock = asyncio.Lock()

    async def decide(self, input: Mapping[str, Any]) -> Decision:
        if _stats(self._watched) != self._seen:  # about 10 stat calls
            await self._reload()
        try:
            result = self._evaluator.evaluate_parsed(json.dumps(input))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # PyO3 turns a Rust panic into a BaseException
            log.error("policy evaluation failed: %s", exc)
            raise PolicyEngineError() from exc
        return Decision.from_result(result)

    async def _reload(self) -> None:
        async with self._reload_lock:
            if _stats(self._watched) == self._seen:
                return  # another request reloaded while this one waited
            self._watched = _watched_paths(self._dir)
            seen = _stats(self._watched)
            try:
                self._evaluator = await asyncio.to_thread(load_evaluator, self._dir)
            except PolicyLoadError as exc:
                log.error("policy change rejected, keeping the last good policy: %s", exc)
            else:
                log.info("policy reloaded from %s", self._dir)
            self._seen = seen  # a rejected edit is not retried until the files change again

    async def check(self) -> None:
        return None  # in-process, and a last good policy is always loaded

    async def close(self) -> None:
        return None
