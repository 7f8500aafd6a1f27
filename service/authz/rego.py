"""Rego files as opa-eval loads them: one module per package, data mounted as OPA does.

opa-eval loads one module per evaluator, so the `.rego` files of one directory (one
package) are joined into one module; every `data.json` under the policies directory is
mounted at its directory's path, as OPA does. A policy can crash a native engine (deeply
nested expressions overflow regorus' parser stack), so a policy is first compiled and
evaluated in a child process (`evaluate_in_child`); only one that survived there is
loaded into the server.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.settings import SettingsError

# A policy must compile and decide within this time in the child process to be loaded.
CHECK_TIMEOUT_S = 20.0


class PolicyLoadError(SettingsError):
    """A policy that does not compile or evaluate; the message names the file and line."""


PACKAGE_RE = re.compile(r"^\s*package\s+([\w.]+)\s*(#.*)?$")
_IMPORT_RE = re.compile(r"^\s*import\s+\S")
_LOCATION_RE = re.compile(r"(\S+\.rego):(\d+):(\d+)")


@dataclass(frozen=True)
class RegoModule:
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


def join_module(files: Iterable[Path]) -> RegoModule:
    """One module from files of one package: the first file as it is, then the others with
    their package and import lines blanked (so every line keeps its number within its file
    and an error names the right file and line). The files must share their imports.
    """
    out: list[str] = []
    segments: list[tuple[int, Path]] = []
    package: str | None = None
    imports: set[str] = set()
    for path in files:
        lines = read_text(path).splitlines()
        file_package = None
        for i, line in enumerate(lines):
            if match := PACKAGE_RE.match(line):
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
    return RegoModule(source="\n".join(out) + "\n", segments=tuple(segments))


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyLoadError(f"{path}: cannot read: {exc}") from None


def load_data(policies_dir: Path) -> dict[str, Any]:
    """Every `data.json` under the directory, mounted at its directory's path (as OPA does)."""
    data: dict[str, Any] = {}
    for path in sorted(policies_dir.rglob("data.json")):
        try:
            value = json.loads(read_text(path))
        except json.JSONDecodeError as exc:
            raise PolicyLoadError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise PolicyLoadError(f"{path}: the top level must be an object")
        node = data
        for part in path.parent.relative_to(policies_dir).parts:
            node = node.setdefault(part, {})
        node.update(value)
    return data


def is_test(path: Path) -> bool:
    return path.name.endswith("_test.rego")


def policy_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.rego") if not is_test(p))


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


def evaluate_in_child(
    module: RegoModule, module_path: str, data_json: str, queries: list[str], input_json: str
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
