"""The documentation stands alone: a short README that links everything, links that
resolve, nothing pointing outside the repository, and an API reference that lists every
route and problem the code has."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, ROOT / "ARCHITECTURE.md", ROOT / "policies" / "README.md", *DOCS]
# Written on other branches; the README links them before they land.
COMING = {"lifecycle.md", "audit.md", "events.md", "runtime.md", "threat-model.md"}
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {_slug(m[1]) for m in re.finditer(r"^#+ (.+)$", text, re.MULTILINE)}


def test_the_readme_is_short_with_its_sections_in_order() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) < 15 * 1024
    sections = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert sections == [
        "Run it",
        "Test it",
        "Use the API",
        "Configure",
        "Why these technologies",
        "Data licence",
        "More documentation",
    ]
    contents = re.findall(r"^- \[(.+?)\]\(#([\w-]+)\)$", text, re.MULTILINE)
    assert [title for title, _ in contents] == sections  # the table of contents
    assert "make run" in text and "make test" in text
    assert "CEP Aberto" in text and "Open\nDatabase License (ODbL)" in text


def test_the_readme_links_every_document() -> None:
    linked = set(_LINK.findall(README.read_text(encoding="utf-8")))
    expected = {f"docs/{doc.name}" for doc in DOCS} | {f"docs/{name}" for name in COMING}
    assert expected <= linked
    assert {"ARCHITECTURE.md", "CHANGELOG.md"} <= linked


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_and_stay_in_the_repository(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    assert "../shared" not in text and "DESIGN.md" not in text
    for target in _LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        name, _, anchor = target.partition("#")
        path = (document.parent / name).resolve() if name else document
        assert ROOT in path.parents or path == ROOT, target
        if path.name in COMING and not path.exists():
            continue
        assert path.exists(), f"{document.name}: {target} does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{document.name}: no heading for {target}"


def test_the_api_reference_lists_every_route_and_problem() -> None:
    spec = importlib.util.spec_from_file_location(
        "api_reference", ROOT / "scripts/api_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    document = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    expected = module.rewritten(document)
    missing = set(expected.splitlines()) - set(document.splitlines())
    extra = set(document.splitlines()) - set(expected.splitlines())
    assert expected == document, f"run scripts/api_reference.py: lacks {missing}, stale {extra}"
    for route in ("GET | `/api/v1/customers`", "DELETE | `/api/v1/customers/{customer_id}`"):
        assert route in document
