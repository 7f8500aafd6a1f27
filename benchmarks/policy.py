"""How fast the embedded policy engine decides, and how long it holds the event loop.

Run: `.venv/bin/python benchmarks/policy.py` (about 10 s). EmbeddedPolicyEngine.decide
runs on the event loop, so its latency is the time the loop is blocked per request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import opa_eval

from service.authz.embedded import EmbeddedPolicyEngine

POLICIES_DIR = Path(__file__).resolve().parents[1] / "policies"
DURATION_S = 2.0
INPUT = {
    "method": "GET",
    "path": ["api", "v1", "customers", "c-1"],
    "principal": {"sub": "user-1", "scopes": ["customers:read"], "roles": ["support"]},
    "resource": {"kind": "customer", "id": "c-1"},
}


def report(name: str, samples_ns: list[int]) -> None:
    ordered = sorted(samples_ns)
    p50 = ordered[len(ordered) // 2] / 1000
    p99 = ordered[int(len(ordered) * 0.99)] / 1000
    per_s = len(ordered) / (sum(ordered) / 1e9)
    print(
        f"{name:<34} {per_s:>9,.0f}/s  p50 {p50:7.1f} µs  p99 {p99:7.1f} µs  "
        f"max {ordered[-1] / 1000:8.1f} µs  (n={len(ordered):,})"
    )


def measure(call: Callable[[], object]) -> list[int]:
    samples: list[int] = []
    end = time.perf_counter() + DURATION_S
    while time.perf_counter() < end:
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    return samples


async def measure_async(decide: Callable[[], Awaitable[object]]) -> list[int]:
    samples: list[int] = []
    end = time.perf_counter() + DURATION_S
    while time.perf_counter() < end:
        start = time.perf_counter_ns()
        await decide()
        samples.append(time.perf_counter_ns() - start)
    return samples


async def measure_reload(policies: Path) -> list[int]:
    """Edit data.json, then time the next decision (which checks and loads the edit)."""
    engine = EmbeddedPolicyEngine(policies, check_interval_s=0)
    data_file = policies / "customers" / "authz" / "data.json"
    data = json.loads(data_file.read_text())
    samples = []
    for i in range(10):
        data["role_scopes"][f"bench-{i}"] = ["customers:read"]
        data_file.write_text(json.dumps(data))
        start = time.perf_counter_ns()
        await engine.decide(INPUT)
        samples.append(time.perf_counter_ns() - start)
    return samples


async def main() -> None:
    print(f"opa-eval, Python {sys.version.split()[0]}, {DURATION_S:.0f} s per line\n")
    package = POLICIES_DIR / "customers" / "authz"
    data = {"customers": {"authz": json.loads((package / "data.json").read_text())}}
    raw = opa_eval.OpaEval(
        str(package / "policy.rego"),
        data_json=json.dumps(data),
        query="data.customers.authz.decision",
    )
    input_json = json.dumps(INPUT)
    report("raw evaluate_parsed", measure(lambda: raw.evaluate_parsed(input_json)))
    engine = EmbeddedPolicyEngine(POLICIES_DIR)
    report("decide, same input (cached)", await measure_async(lambda: engine.decide(INPUT)))
    ids = itertools.count()

    def new_id_input() -> dict[str, object]:
        i = next(ids)
        return {**INPUT, "path": [*INPUT["path"][:3], f"c-{i}"], "resource": {"id": f"c-{i}"}}

    report("decide, a new id each time", await measure_async(lambda: engine.decide(new_id_input())))
    # The alternative not taken: evaluating in a worker thread (the loop is free meanwhile,
    # but each decision takes longer than the time the inline call blocks the loop).
    in_thread = await measure_async(lambda: asyncio.to_thread(raw.evaluate_parsed, input_json))
    report("raw evaluate via asyncio.to_thread", in_thread)
    with tempfile.TemporaryDirectory() as tmp:
        policies = Path(shutil.copytree(POLICIES_DIR, Path(tmp) / "policies"))
        samples = await measure_reload(policies)
    print(
        f"\nreload after an edit (child-process check + load, off the loop): "
        f"median {statistics.median(samples) / 1e6:.0f} ms, max {max(samples) / 1e6:.0f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
