"""The decision cache's key: what a policy reads of its input (static scan), and the cache
deciding exactly as a fresh evaluation does."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import opa_eval
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.authz.decision import Decision
from service.authz.embedded import DECISION_QUERY, EmbeddedPolicyEngine, load_evaluator
from service.authz.inputs import InputReads, blank_comments_and_strings, input_reads
from service.authz.rego import join_module, load_data, policy_files
from tests.authz.inputs import POLICIES_DIR, data_file, policy_file, request

WHOLE = InputReads(paths=None)
UNCACHED = InputReads(paths=None, cacheable=False)


def reads(*paths: str) -> InputReads:
    return InputReads(paths=tuple(sorted(tuple(p.split(".")) for p in paths)))


# --- the scanner ---


def test_the_shipped_policy_reads_neither_path_nor_id() -> None:
    _, found = load_evaluator(POLICIES_DIR)
    assert found == reads("method", "principal", "query", "route")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('allow if input.method == "GET"', reads("method")),
        (
            'allow if input.principal.sub == "a"\nx if input.principal.scopes[_]',
            reads("principal.scopes", "principal.sub"),
        ),
        ("x if input.principal\ny if input.principal.scopes", reads("principal")),
        ("x if input.a.b.c\ny if input.a.b", reads("a.b")),
        ('x if input.query[_] == "cpf"', reads("query")),
        ("x if count(input.path) == 4", reads("path")),
        ("import input.principal as p\nx if p.sub", reads("principal")),
        ("x := 1", reads()),
        ('x if input["method"] == "GET"', WHOLE),
        ("x if input[k]", WHOLE),
        ("x if walk(input, [p, v])", WHOLE),
        ('x if object.get(input, "method", 1)', WHOLE),
        ("import input\nx if input.method", WHOLE),
        ("x if y with input as {}", WHOLE),
        ('x if y with input.method as "GET"', WHOLE),
        ("x if {some k, v in input}", WHOLE),
        ("x if time.now_ns() > 0", UNCACHED),
        ('x if http.send({"url": input.u})', UNCACHED),
        ('x := rand.intn("a", 10)', UNCACHED),
        ('x := uuid.rfc4122("a")', UNCACHED),
        ('x if net.lookup_ip_addr("a")', UNCACHED),
        ("x := opa.runtime()", UNCACHED),
        ("x if io.jwt.decode_verify(input.t, {})", UNCACHED),
        # comments and strings read nothing
        ("# input[x] time.now_ns()\nx if input.method", reads("method")),
        ('x := "input[x] with input as {} time.now_ns()"', reads()),
        ("x := `input\n[x]` # http.send\ny if input.a", reads("a")),
        ('x := "a \\" input[x] \\\\"\ny if input.b', reads("b")),
        ('x := "# not a comment"\ny if input.c', reads("c")),
        # other words are not the root document, or are read as it when in doubt
        ("my_input := 1\ninputs := 2\ninput_x := 3\nx if input.a", reads("a")),
        ("x if data.input.a", reads("a")),
        ("x if data.input", WHOLE),
        ("x if data.mytime.now_ns", reads()),
    ],
)
def test_scan(source: str, expected: InputReads) -> None:
    assert input_reads(source) == expected


def test_blanking_keeps_lines_and_removes_every_literal() -> None:
    source = 'a := "x#y"  # c "d"\nb := `e\nf` # g\nh := "\\"input\\""\n'
    blanked = blank_comments_and_strings(source)
    assert blanked.count("\n") == source.count("\n")
    assert len(blanked) == len(source)
    assert blanked.split() == ["a", ":=", "b", ":=", "h", ":="]


# A model of the scanner over generated fragments: each fragment knows what it reads.
NAMES = st.sampled_from(["method", "route", "path", "principal", "sub", "scopes", "a", "b"])
CHAINS = st.lists(NAMES, min_size=1, max_size=3).map(tuple)


@st.composite
def fragments(draw: Any) -> tuple[str, tuple[str, ...] | str | None]:
    """(Rego text, what it reads): a path, "whole", "uncached", or None (nothing)."""
    kind = draw(st.sampled_from(["static", "indexed", "dynamic", "nondet", "inert", "literal"]))
    if kind == "static":
        chain = draw(CHAINS)
        op = draw(st.sampled_from([" == 1", " != null", ""]))
        return f"input.{'.'.join(chain)}{op}", chain
    if kind == "indexed":
        chain = draw(CHAINS)
        index = draw(st.sampled_from(["_", "k", "0", '"x"']))
        return f"input.{'.'.join(chain)}[{index}]", chain
    if kind == "dynamic":
        text = draw(
            st.sampled_from(
                ["input[k]", "input", 'input["method"]', "walk(input, x)", "y with input as {}",
                 "y with input.a as 1", "object.keys(input)", "count( input )"]
            )
        )  # fmt: skip
        return text, "whole"
    if kind == "nondet":
        call = draw(
            st.sampled_from(
                ["time.now_ns()", "http.send(r)", "rand.intn(\"s\", 2)", "uuid.rfc4122(\"s\")",
                 "net.cidr_expand(\"10.0.0.0/30\")", "opa.runtime()", "io.jwt.decode_verify(t, c)"]
            )
        )  # fmt: skip
        return call, "uncached"
    if kind == "inert":
        return draw(
            st.sampled_from(["my_input == 1", "inputs[0]", "x.y", "data.z.w", "1 + 2"])
        ), None
    # A string or comment holding anything, read as nothing.
    inner = draw(st.sampled_from(["input[k]", "with input as", "time.now_ns()", "input.q", "#"]))
    return draw(st.sampled_from([f'"{inner}"', f"`{inner}`", f'"\\"{inner}\\""'])), None


@settings(max_examples=400, deadline=None)
@given(st.lists(fragments(), max_size=8), st.booleans())
def test_scan_agrees_with_the_model(parts: list[Any], comments: bool) -> None:
    lines = []
    for i, (text, _) in enumerate(parts):
        line = f"r{i} if {{ {text} }}"
        lines.append(line + ("  # input[x] time.now_ns() `" if comments else ""))
    effects = [effect for _, effect in parts]
    if "uncached" in effects:
        expected = UNCACHED
    elif "whole" in effects:
        expected = WHOLE
    else:
        chains = {effect for effect in effects if isinstance(effect, tuple)}
        kept = {c for c in chains if not any(c[: len(o)] == o for o in chains if len(o) < len(c))}
        expected = InputReads(paths=tuple(sorted(kept)))
    assert input_reads("\n".join(lines)) == expected


def test_key_tells_absent_from_null_and_ignores_what_is_not_read() -> None:
    found = reads("principal.sub", "route")
    base = {"route": "/r", "principal": {"sub": "a"}, "path": ["x"]}
    assert found.key(base) == found.key({**base, "path": ["y"], "resource": {"id": "1"}})
    assert found.key(base) != found.key({**base, "principal": {"sub": "b"}})
    assert found.key({"route": None}) != found.key({})
    assert found.key({"principal": None}) == found.key({"principal": "s"})  # both: no .sub
    assert found.key({"principal": {"sub": None}}) != found.key({"principal": {}})


# --- the cache decides as a fresh evaluation does ---


def fresh_evaluator(policies: Path) -> opa_eval.OpaEval:
    """The policy evaluated with no cache at all (the module as the engine joins it)."""
    module = join_module(policy_files(policies / "customers" / "authz"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "joined.rego")
        path.write_text(module.source)
        data = json.dumps(load_data(policies))
        return opa_eval.OpaEval(str(path), data_json=data, query=DECISION_QUERY)


PRINCIPALS = [
    {"sub": "u1", "scopes": ["customers:read"], "roles": []},
    {"sub": "u1", "scopes": ["customers:pii", "customers:read"], "roles": []},
    {"sub": "u2", "scopes": ["customers:write"], "roles": ["support"]},
    {"sub": "u3", "scopes": ["customers:delete"], "roles": ["dpo"]},
    {"sub": "u4", "scopes": [], "roles": ["onboarding", "x"]},
    {"sub": "u5", "scopes": "customers:read", "roles": "dpo"},
    {"sub": "u6"},
    "user",
    None,
]


def random_input(rng: random.Random, ids: list[str]) -> dict[str, Any]:
    """Inputs from small pools of values, so most repeat what the cache decided before;
    mostly what the app sends (route matching path), sometimes anything."""
    customer = rng.choice(ids)
    path: Any
    route: Any
    path, route = rng.choice(
        [
            (["api", "v1", "customers"], "/api/v1/customers"),
            (["api", "v1", "customers", customer], "/api/v1/customers/{customer_id}"),
        ]
    )
    if rng.random() < 0.2:
        path = rng.choice([path, ["api", "v2"], "x"])
        route = rng.choice([route, "/api/v1/customers", "/other", None, 7])
    document: dict[str, Any] = {
        "method": rng.choice(["GET", "GET", "POST", "PATCH", "DELETE", "PUT"]),
        "path": path,
        "route": route,
        "principal": rng.choice(PRINCIPALS),
        "query": rng.choice([[], [], ["limit"], ["email"], ["cpf", "limit"], "cpf"]),
    }
    if isinstance(path, list) and len(path) == 4:
        document["resource"] = {"kind": "customer", "id": customer}
    if rng.random() < 0.1:
        del document[rng.choice(["method", "route", "principal", "query"])]  # may be missing
    return document


def as_fresh(evaluator: opa_eval.OpaEval, document: dict[str, Any]) -> Decision:
    return Decision.from_result(json.loads(evaluator.evaluate(json.dumps(document))))


async def differential(policies: Path, count: int, seed: int) -> EmbeddedPolicyEngine:
    engine = EmbeddedPolicyEngine(policies)
    evaluator = fresh_evaluator(policies)
    rng = random.Random(seed)
    ids = [f"{n:024x}" for n in range(1, 30)]
    for _ in range(count):
        document = random_input(rng, ids)
        assert await engine.decide(document) == as_fresh(evaluator, document), document
    return engine


async def test_cached_decisions_equal_fresh_evaluations_of_the_shipped_policy() -> None:
    engine = await differential(POLICIES_DIR, 4000, seed=1)
    assert 0 < len(engine._decisions) < 2000  # most of the 4000 were cache hits
    assert {d.allow for d in engine._decisions.values()} == {True, False}


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    return Path(shutil.copytree(POLICIES_DIR, tmp_path / "policies"))


BLOCKED = f"{7:024x}"


def block_ids(policies: Path) -> None:
    """A policy that reads the id: customers on a deny-list in data.json are never served."""
    data = json.loads(data_file(policies).read_text())
    data["blocked_ids"] = [BLOCKED, f"{9:024x}"]
    data_file(policies).write_text(json.dumps(data))
    source = policy_file(policies).read_text()
    rule = "allow if {\n\trequired_scope in scopes\n"
    assert rule in source
    policy_file(policies).write_text(
        source.replace(rule, rule + "\tnot input.resource.id in data.customers.authz.blocked_ids\n")
    )


async def test_a_policy_that_reads_the_id_still_decides_per_id(policies: Path) -> None:
    block_ids(policies)
    engine = EmbeddedPolicyEngine(policies)
    assert ("resource", "id") in (engine._reads.paths or ())
    item = ["api", "v1", "customers"]
    for _ in range(3):  # the second and third rounds come from the cache
        for number in range(1, 12):
            document = request("GET", [*item, f"{number:024x}"], ["customers:read"])
            blocked = number in (7, 9)
            assert (await engine.decide(document)).allow is not blocked
    await differential(policies, 2000, seed=2)


async def test_a_reload_scans_the_new_policy(policies: Path) -> None:
    engine = EmbeddedPolicyEngine(policies, check_interval_s=0)
    blocked = request("GET", ["api", "v1", "customers", BLOCKED], ["customers:read"])
    other = request("GET", ["api", "v1", "customers", f"{8:024x}"], ["customers:read"])
    assert (await engine.decide(other)).allow and (await engine.decide(blocked)).allow
    block_ids(policies)
    assert (await engine.decide(other)).allow is True
    assert (await engine.decide(blocked)).allow is False


async def test_a_clock_reading_policy_is_never_cached(policies: Path) -> None:
    source = policy_file(policies).read_text()
    policy_file(policies).write_text(source + "\nrecent if time.now_ns() > 0\n")
    engine = EmbeddedPolicyEngine(policies)
    assert engine._reads == UNCACHED
    document = request("GET", ["api", "v1", "customers"], ["customers:read"])
    for _ in range(3):
        assert (await engine.decide(document)).allow is True
    assert engine._decisions == {}
