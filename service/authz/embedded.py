"""The embedded engine: opa-eval (regorus, Rust) in-process, reloading when a file changes.

An evaluation of the default policy takes about 0.05-0.1 ms (benchmarks/stages.py), so it
runs on the event loop: a worker thread would add more latency than the loop time it frees.
Two things keep it off the hot path (both measured, docs/performance.md):
- the files are checked for changes at most every `check_interval_s` (a stat of each file
  costs ~28 µs, more than the rest of a cached decision), so an edit applies within that
  interval rather than on the very next request;
- decisions are cached (bounded) by the parts of the input the loaded policy reads
  (service/authz/inputs.py, found again on every load), and the cache is emptied on every
  reload. The shipped policy reads the route template, not the path or the id, so reads
  of different customers by one caller share one decision.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import opa_eval
import orjson

from service.authz.decision import Decision, PolicyEngineError, parse_decision
from service.authz.inputs import InputReads, input_reads
from service.authz.rego import (
    PolicyLoadError,
    data_files,
    evaluate_in_child,
    join_module,
    load_data,
    policy_digest,
    policy_files,
)

log = logging.getLogger(__name__)

PACKAGE_DIR = Path("customers", "authz")
DECISION_QUERY = "data.customers.authz.decision"
# The input evaluated in the child process before a policy is loaded.
_SAMPLE_INPUT: Mapping[str, Any] = {
    "method": "GET",
    "path": ["api", "v1", "customers", "c-1"],
    "route": "/api/v1/customers/{customer_id}",
    "principal": {"sub": "policy-check", "scopes": ["customers:read"], "roles": []},
    "resource": {"kind": "customer", "id": "c-1"},
}


def load_evaluator(policies_dir: Path) -> tuple[opa_eval.OpaEval, InputReads]:
    """Check the decision module in a child process, then load it here; with what it reads
    of its input."""
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
            evaluator = opa_eval.OpaEval(module_path, data_json=data_json, query=DECISION_QUERY)
        except RuntimeError as exc:
            raise PolicyLoadError(f"{where}: {module.locate(str(exc), module_path)}") from None
    return evaluator, input_reads(module.source)


def loaded_digest(policies_dir: Path) -> str:
    """sha256 over the files a load reads (the package's .rego, every data.json)."""
    files = [*policy_files(policies_dir / PACKAGE_DIR), *data_files(policies_dir)]
    return policy_digest(files, policies_dir)


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


def _changed_files(before: tuple[_Stat, ...], after: tuple[_Stat, ...], root: Path) -> str:
    """The files added, removed or modified between two stat lists, relative to root."""
    old = {stat[0]: stat[1:] for stat in before}
    new = {stat[0]: stat[1:] for stat in after}
    names = []
    for path in sorted(old.keys() | new.keys()):
        if not path.endswith((".rego", ".json")) or old.get(path) == new.get(path):
            continue
        verb = "added" if path not in old else "removed" if path not in new else "changed"
        names.append(f"{verb} {os.path.relpath(path, root)}")
    return ", ".join(names) or "no file content changed"


def _to_json(input: Mapping[str, Any]) -> str:
    """The input as JSON text, as the evaluator reads it.

    Text that is not Unicode (a lone surrogate) has no JSON form the engine reads: no
    decision, so 503, never an allow. (HTTP cannot bring one: yarl decodes bad UTF-8 in a
    URL to U+FFFD.)"""
    try:
        return orjson.dumps(input).decode()
    except orjson.JSONEncodeError as exc:
        raise PolicyEngineError() from exc


class EmbeddedPolicyEngine:
    """opa-eval in-process; reloads on the first decision after a file under policies_dir
    changes (checked at most every `check_interval_s`). A bad edit keeps the last good
    policy (and logs why); a bad policy at start raises PolicyLoadError, so the app refuses
    to start.
    """

    def __init__(
        self,
        policies_dir: Path,
        *,
        check_interval_s: float = 0.5,
        max_cached: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dir = policies_dir
        self._watched = _watched_paths(policies_dir)
        self._seen = _stats(self._watched)
        self._evaluator, self._reads = load_evaluator(policies_dir)
        self.digest = loaded_digest(policies_dir)
        # INFO once serving (service/runtime.py): a failed start stays one line on stderr
        log.debug("policy loaded from %s, digest %s", policies_dir, self.digest)
        self._reload_lock = asyncio.Lock()
        self._check_interval_s = check_interval_s
        self._clock = clock
        self._next_check = clock() + check_interval_s
        self._decisions: dict[bytes, Decision] = {}
        self._max_cached = max_cached

    async def decide(self, input: Mapping[str, Any]) -> Decision:
        if self._clock() >= self._next_check:
            self._next_check = self._clock() + self._check_interval_s
            if _stats(self._watched) != self._seen:
                await self._reload()
        if not self._reads.cacheable:
            return self._evaluate(_to_json(input))
        try:
            key = self._reads.key(input)
        except orjson.JSONEncodeError as exc:
            raise PolicyEngineError() from exc
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._evaluate(_to_json(input))
            if len(self._decisions) >= self._max_cached:
                del self._decisions[next(iter(self._decisions))]  # the oldest
            self._decisions[key] = decision
        return decision

    def _evaluate(self, input_json: str) -> Decision:
        try:
            # `evaluate` (JSON text) + orjson costs ~25 µs less than `evaluate_parsed`.
            result = orjson.loads(self._evaluator.evaluate(input_json))
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
            changed = _changed_files(self._seen, seen, self._dir)
            try:
                loaded = await asyncio.to_thread(load_evaluator, self._dir)
            except PolicyLoadError as exc:
                log.error(
                    "policy change (%s) rejected, keeping the last good policy %s: %s",
                    changed,
                    self.digest,
                    exc,
                )
            else:
                self._evaluator, self._reads = loaded
                self.digest = loaded_digest(self._dir)
                self._decisions = {}  # decided by the previous policy
                log.warning(
                    "policy reloaded from %s (%s), digest %s", self._dir, changed, self.digest
                )
            self._seen = seen  # a rejected edit is not retried until the files change again

    async def check(self) -> None:
        return None  # in-process, and a last good policy is always loaded

    async def close(self) -> None:
        return None
