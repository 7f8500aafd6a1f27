"""Rewrite the generated part of docs/api.md: every route with its statuses (from the
OpenAPI document the app serves) and every problem type (from service/errors.py).

    .venv/bin/python scripts/api_reference.py          # after adding a route or a problem

`tests/test_docs.py` fails while docs/api.md differs from what this prints.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "api.md"
BEGIN, END = "<!-- generated: begin -->", "<!-- generated: end -->"


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def render() -> str:
    from service import errors
    from service.api.openapi import build_spec
    from service.app import create_app
    from service.settings import load_settings

    spec: dict[str, Any] = build_spec(create_app(load_settings(environ={})))
    lines = [
        "### Routes",
        "",
        "| method | path | operation | success | errors |",
        "|---|---|---|---|---|",
    ]
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            statuses = sorted(op["responses"], key=str)
            success = ", ".join(s for s in statuses if str(s).startswith(("1", "2", "3")))
            failure = ", ".join(s for s in statuses if not str(s).startswith(("1", "2", "3")))
            summary = op.get("summary", "")
            lines.append(
                f"| {method.upper()} | `{path}` | `{op['operationId']}`: {summary} "
                f"| {success} | {failure} |"
            )
    lines += [
        "",
        "### Problem types",
        "",
        "Every error body is `application/problem+json` with `type`, `title`, `status`,",
        "`detail`; input errors add `errors`, and some problems a stable `code`.",
        "",
        "| status | `type` (after `" + errors.PROBLEM_BASE + "`) | title | `code` |",
        "|---|---|---|---|",
    ]
    problems = sorted(
        (p for p in _subclasses(errors.Problem) if p.__module__ == errors.__name__),
        key=lambda p: (p.status, p.slug),
    )
    for problem in problems:
        code = f"`{problem.code}`" if problem.code else ""
        lines.append(f"| {problem.status} | `{problem.slug}` | {problem.title} | {code} |")
    return "\n".join(lines) + "\n"


def rewritten(document: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    return pattern.sub(f"{BEGIN}\n{render()}{END}", document, count=1)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    DOC.write_text(rewritten(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"{DOC.relative_to(ROOT)} rewritten")
