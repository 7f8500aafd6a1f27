"""Authorization decisions from the Rego policies in `policies/` (package `customers.authz`).

The app sends one input document per request (built from the verified token, never the
raw token); `resource` is present only when the path names one customer:

    {"method": "GET", "path": ["api", "v1", "customers", "<id>"],
     "principal": {"sub": "user-1", "scopes": ["customers:read"], "roles": ["support"]},
     "resource": {"kind": "customer", "id": "<id>"}}

and reads the rule `decision` = {"allow": bool, "reasons": [str], "masked_fields": [str]}.
Anything else (undefined, malformed, an engine error) is never an allow.

Two engines, same policies:
- `EmbeddedPolicyEngine`: opa-eval (regorus, Rust) in-process. A decision of the default
  policy, change check included, takes about 0.15 ms (benchmarks/policy.py), so it runs on
  the event loop: a worker thread would add more latency than the loop time it frees.
  opa-eval loads one module per evaluator, so the `.rego` files of one directory (one
  package) are joined into one module; every `data.json` under the policies directory is
  mounted at its directory's path, as OPA does. A policy can still crash a native engine
  (deeply nested expressions overflow regorus' parser stack), so every new policy is first
  compiled and evaluated in a child process; only a policy that survived there is loaded
  into the server.
- `OpaPolicyEngine`: an OPA server over HTTP (`opa run -s policies/`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeGuard

import aiohttp
import opa_eval

from service.errors import ServiceUnavailable
from service.settings import AuthzSettings, SettingsError

log = logging.getLogger(__name__)

PACKAGE_DIR = Path("customers", "authz")
DECISION_QUERY = "data.customers.authz.decision"
OPA_DECISION_PATH = "/v1/data/customers/authz/decision"
# A policy must compile and decide within this time in the child process to be loaded.
CHECK_TIMEOUT_S = 20.0
# The input evaluated in the child process before a policy is loaded.
_SAMPLE_INPUT: Mapping[str, Any] = {
    "method": "GET",
    "path": ["api", "v1", "customers", "c-1"],
    "principal": {"sub": "policy-check", "scopes": ["customers:read"], "roles": []},
    "resource": {"kind": "customer", "id": "c-1"},
}


class PolicyEngineError(ServiceUnavailable):
    """The policy engine cannot decide now: the request gets 503, never an allow."""

    def __init__(self, detail: str = "The authorization policy engine cannot answer now.") -> None:
        super().__init__(detail, retry_after_s=5)


class PolicyLoadError(SettingsError):
    """A policy that does not compile or evaluate; the message names the file and line."""


@dataclass(frozen=True)
class Decision:
    allow: bool
    reasons: tuple[str, ...]
    masked_fields: frozenset[str]

    @classmethod
    def deny(cls, reason: str) -> Decision:
        return cls(allow=False, reasons=(reason,), masked_fields=frozenset())

    @classmethod
    def from_result(cls, obj: object) -> Decision:
        """Strict reading of a `decision` value: any shape but the documented one is a deny."""
        return _parse_decision(obj) or cls.deny("policy returned no valid decision")


def _parse_decision(obj: object) -> Decision | None:
    if not isinstance(obj, dict):
        return None  # includes undefined (opa-eval answers the string "<undefined>")
    allow, reasons, masked = obj.get("allow"), obj.get("reasons"), obj.get("masked_fields")
    if not isinstance(allow, bool) or not _is_str_list(reasons) or not _is_str_list(masked):
        return None
    return Decision(allow=allow is True, reasons=tuple(reasons), masked_fields=frozenset(masked))


def _is_str_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


class PolicyEngine(Protocol):
    async def decide(self, input: Mapping[str, Any]) -> Decision: ...

    async def check(self) -> None:
        """For readiness probes: raise PolicyEngineError when the engine cannot decide."""

    async def close(self) -> None: ...


# --- loading policy files for opa-eval ---

_PACKAGE_RE = re.compile(r"^\s*package\s+([\w.]+)\s*(#.*)?$")
_IMPORT_RE = re.compile(r"^\s*import\s+\S")
_LOCATION_RE = re.compile(r"(\S+\.rego):(\d+):(\d+)")


@dataclass(frozen=True)
class _Module:
    """Several `.rego` files of one package joined into one module (opa-eval loads one)."""

    source: str
    # (first line in `source`, file): maps an error location back to the file the team edits.
    segments: tuple[tuple[int, Path], ...]

    def locate(self, message: str, module_path: str) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(1) != module_path:
                return match.group(0)
            line = int(match.group(2))
            start, path = [s for s in self.segments if s[0] <= line][-1]
            return f"{path}:{line - start + 1}:{match.group(3)}"

        return _LOCATION_RE.sub(replace, message)


def _join_module(files: Iterable[Path]) -> _Module:
    """One module from files of one package: the first file as it is, then the others with
    their package and import lines blanked (so every line keeps its number within its file
    and an error names the right file and line). The files must share their imports.
    """
    out: list[str] = []
    segments: list[tuple[int, Path]] = []
    package: str | None = None
    imports: set[str] = set()
    for path in files:
        lines = _read_text(path).splitlines()
        file_package = None
        for i, line in enumerate(lines):
            if match := _PACKAGE_RE.match(line):
                file_package = match.group(1)
            elif _IMPORT_RE.match(line):
                if package is None:
                    imports.add(line.strip())
                elif line.strip() not in imports:
                    raise PolicyLoadError(
                        f"{path}:{i + 1}: `{line.strip()}` is missing from {segments[0][1]}; "
                        "the files of one package must share their imports"
                    )
            else:
                continue
            if package is not None:
                lines[i] = ""
        if file_package is None:
            raise PolicyLoadError(f"{path}: no package line")
        if package not in (None, file_package):
            raise PolicyLoadError(
                f"{path}: package {file_package}, but {segments[0][1]} is package {package} "
                "(one package per directory)"
            )
        package = file_package
        segments.append((len(out) + 1, path))
        out.extend(lines)
    if not segments:
        raise PolicyLoadError("no .rego files to load")
    return _Module(source="\n".join(out) + "\n", segments=tuple(segments))


def _package_of(source: str) -> str:
    return next(m.group(1) for line in source.splitlines() if (m := _PACKAGE_RE.match(line)))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyLoadError(f"{path}: cannot read: {exc}") from None


def _load_data(policies_dir: Path) -> dict[str, Any]:
    """Every `data.json` under the directory, mounted at its directory's path (as OPA does)."""
    data: dict[str, Any] = {}
    for path in sorted(policies_dir.rglob("data.json")):
        try:
            value = json.loads(_read_text(path))
        except json.JSONDecodeError as exc:
            raise PolicyLoadError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise PolicyLoadError(f"{path}: the top level must be an object")
        node = data
        for part in path.parent.relative_to(policies_dir).parts:
            node = node.setdefault(part, {})
        node.update(value)
    return data


def _is_test(path: Path) -> bool:
    return path.name.endswith("_test.rego")


def _policy_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.rego") if not _is_test(p))


# The child process: compile the module, evaluate each query, print the results as JSON.
# It imports only opa_eval, so it starts fast; a crash there cannot take the server down.
_CHILD = """
import json, sys, opa_eval
job = json.load(sys.stdin)
out = {}
for query in job["queries"]:
    try:
        ev = opa_eval.OpaEval(job["module"], data_json=job["data"], query=query)
        out[query] = {"value": ev.evaluate(job["input"])}
    except Exception as exc:
        out[query] = {"error": str(exc)}
json.dump(out, sys.stdout)
"""


def _evaluate_in_child(
    module: _Module, module_path: str, data_json: str, queries: list[str], input_json: str
) -> dict[str, tuple[bool, Any]]:
    """Evaluate each query in a child process: {query: (True, value) | (False, error)}.

    Raises PolicyLoadError when the child crashes, hangs or answers garbage.
    """
    job = {"module": module_path, "data": data_json, "queries": queries, "input": input_json}
    where = ", ".join(str(path) for _, path in module.segments)
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-c", _CHILD],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PolicyLoadError(f"{where}: evaluation took over {CHECK_TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        raise PolicyLoadError(
            f"{where}: the Rego engine crashed (exit status {proc.returncode}); "
            f"look for very deep nesting. {proc.stderr.strip()[-300:]}"
        )
    try:
        raw = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise PolicyLoadError(f"{where}: the policy check answered garbage") from None
    results: dict[str, tuple[bool, Any]] = {}
    for query in queries:
        item = raw.get(query, {"error": "no answer"})
        if "error" in item:
            results[query] = (False, module.locate(item["error"], module_path))
        else:
            results[query] = (True, json.loads(item["value"]))
    return results


def _load_evaluator(policies_dir: Path) -> opa_eval.OpaEval:
    """Check the decision module in a child process, then load it here."""
    module = _join_module(_policy_files(policies_dir / PACKAGE_DIR))
    data_json = json.dumps(_load_data(policies_dir))
    with tempfile.TemporaryDirectory(prefix="policy-") as tmp:
        module_path = os.path.join(tmp, "customers.authz.rego")
        Path(module_path).write_text(module.source, encoding="utf-8")
        result = _evaluate_in_child(
            module, module_path, data_json, [DECISION_QUERY], json.dumps(_SAMPLE_INPUT)
        )
        ok, value = result[DECISION_QUERY]
        where = ", ".join(str(path) for _, path in module.segments)
        if not ok:
            raise PolicyLoadError(f"{where}: {value}")
        if _parse_decision(value) is None:
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
        self._evaluator = _load_evaluator(policies_dir)
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
                self._evaluator = await asyncio.to_thread(_load_evaluator, self._dir)
            except PolicyLoadError as exc:
                log.error("policy change rejected, keeping the last good policy: %s", exc)
            else:
                log.info("policy reloaded from %s", self._dir)
            self._seen = seen  # a rejected edit is not retried until the files change again

    async def check(self) -> None:
        return None  # in-process, and a last good policy is always loaded

    async def close(self) -> None:
        return None


class OpaPolicyEngine:
    """An OPA server: POST {opa_url}/v1/data/customers/authz/decision with {"input": ...}."""

    def __init__(self, session: aiohttp.ClientSession, opa_url: str, timeout_s: float) -> None:
        self._session = session
        self._url = opa_url.rstrip("/") + OPA_DECISION_PATH
        self._health_url = opa_url.rstrip("/") + "/health"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def check(self) -> None:
        """OPA's own health endpoint: 200 once its policies are loaded."""
        try:
            async with self._session.get(self._health_url, timeout=self._timeout) as resp:
                healthy = resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            healthy = False
        if not healthy:
            raise PolicyEngineError()

    async def decide(self, input: Mapping[str, Any]) -> Decision:
        try:
            async with self._session.post(
                self._url, json={"input": input}, timeout=self._timeout
            ) as resp:
                status = resp.status
                body = await resp.json(content_type=None) if status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.error("OPA policy engine failed: %r", exc)
            raise PolicyEngineError() from exc
        if status != 200 or not isinstance(body, dict):
            log.error("OPA policy engine answered HTTP %s: %.200r", status, body)
            raise PolicyEngineError()
        if "result" not in body:
            return Decision.deny("policy decision is undefined")
        return Decision.from_result(body["result"])

    async def close(self) -> None:
        return None  # the session belongs to the app


def build_policy_engine(
    settings: AuthzSettings, session: aiohttp.ClientSession, *, base_dir: Path
) -> PolicyEngine:
    """The engine named by `authz.engine`; raises PolicyLoadError for a bad embedded policy."""
    if settings.engine == "opa":
        return OpaPolicyEngine(session, settings.opa_url, settings.timeout_s)
    return EmbeddedPolicyEngine((base_dir / settings.policies_dir).resolve())


# --- Rego tests ---


@dataclass(frozen=True)
class PolicyTestResult:
    name: str
    passed: bool
    message: str


_TEST_RULE_RE = re.compile(r"^(test_\w+)\b", re.MULTILINE)


def run_policy_tests(policies_dir: Path) -> list[PolicyTestResult]:
    """Run every `test_*` rule of every `*_test.rego` under policies_dir, as `opa test` does.

    A test passes only when its rule is `true`; false, undefined or an error fail it. The
    test file is joined with the other `.rego` files of its directory (same package).
    """
    data_json = json.dumps(_load_data(policies_dir))
    results: list[PolicyTestResult] = []
    for test_file in sorted(policies_dir.rglob("*_test.rego")):
        directory = test_file.parent
        module = _join_module([*_policy_files(directory), test_file])
        package = _package_of(module.source)
        names = list(dict.fromkeys(_TEST_RULE_RE.findall(_read_text(test_file))))
        queries = [f"data.{package}.{name}" for name in names]
        label = test_file.relative_to(policies_dir)
        with tempfile.TemporaryDirectory(prefix="policy-test-") as tmp:
            module_path = os.path.join(tmp, "module.rego")
            Path(module_path).write_text(module.source, encoding="utf-8")
            try:
                outcome = _evaluate_in_child(module, module_path, data_json, queries, "{}")
            except PolicyLoadError as exc:
                outcome = {query: (False, str(exc)) for query in queries}
        for name, query in zip(names, queries, strict=True):
            ok, value = outcome[query]
            if not ok:
                results.append(PolicyTestResult(f"{label}::{name}", False, str(value)))
            elif value is True:
                results.append(PolicyTestResult(f"{label}::{name}", True, "passed"))
            else:
                why = "undefined" if value == "<undefined>" else f"got {json.dumps(value)}"
                results.append(PolicyTestResult(f"{label}::{name}", False, why))
    return results
