"""What a Rego policy reads of its input: the key of the embedded engine's decision cache.

A decision depends on the policy, its data and the parts of the input the policy reads. The
first two are fixed between reloads; so a cache keyed on the parts read is exact. Which
parts is found by a conservative static scan of the module's source, redone on every load:

- comments and strings are blanked first (`"input[x]"` in a message reads nothing);
- every `input` must be followed by a static `.name` chain (`input.principal.scopes`): the
  key holds that subtree whole, whatever the policy then does inside it (`input.query[_]`);
- any other use (`input[x]`, bare `input`, `with input as`, `walk(input, ...)`,
  `object.get(input, ...)`) keys the cache on the whole input;
- a builtin whose answer is not a function of its arguments (`time.now_ns`, `http.send`,
  `rand.*`, `uuid.*`, `net.*`, `opa.runtime`, `io.jwt.decode_verify` which reads the clock)
  turns the cache off: no key of the input could make such a decision exact.

A word that is not the root document (`foo.input.x`, `my_input`) is read as `input` when in
doubt: a larger key, never a wrong decision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

# Comments, "strings" (with escapes) and `raw strings`, leftmost first: a `#` inside a
# string is no comment, a quote inside a comment opens no string.
_BLANKED = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`|#[^\n]*')
_INPUT = re.compile(r"(?<![A-Za-z0-9_])input(?![A-Za-z0-9_])((?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
_WITH_INPUT = re.compile(r"(?<![A-Za-z0-9_])with\s+input(?![A-Za-z0-9_])")
_NONDETERMINISTIC = re.compile(
    r"(?<![A-Za-z0-9_])(?:time\.now_ns|http\.send|rand\.|uuid\.|net\.|opa\.runtime"
    r"|io\.jwt\.decode_verify)"
)


def blank_comments_and_strings(source: str) -> str:
    """`source` with every comment and string literal turned into spaces (lines kept)."""
    return _BLANKED.sub(lambda match: re.sub(r"[^\n]", " ", match.group(0)), source)


@dataclass(frozen=True)
class InputReads:
    """The input paths a policy reads: `paths` (None: the whole input), or `cacheable`
    False when a decision may change with nothing in the input changing."""

    paths: tuple[tuple[str, ...], ...] | None
    cacheable: bool = True

    def key(self, input: Mapping[str, Any]) -> bytes:
        """The cache key of `input`: each read path's value, or its absence.

        Raises orjson.JSONEncodeError for a value with no JSON form (a lone surrogate)."""
        if self.paths is None:
            return orjson.dumps(input, option=orjson.OPT_SORT_KEYS)
        parts: list[list[Any]] = []
        for path in self.paths:
            node: Any = input
            for name in path:
                # `type(...) is dict` first: an ABC's isinstance costs ~0.3 µs a step
                if not (type(node) is dict or isinstance(node, Mapping)) or name not in node:
                    parts.append([])  # absent (`not input.principal` tells it from null)
                    break
                node = node[name]
            else:
                parts.append([node])
        return orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)


WHOLE_INPUT = InputReads(paths=None)


def input_reads(source: str) -> InputReads:
    """What the Rego module `source` reads of its input (see the module docstring)."""
    code = blank_comments_and_strings(source)
    if _NONDETERMINISTIC.search(code):
        return InputReads(paths=None, cacheable=False)
    if _WITH_INPUT.search(code):
        return WHOLE_INPUT
    paths: set[tuple[str, ...]] = set()
    for match in _INPUT.finditer(code):
        if not match.group(1):  # bare `input`, `input[x]`: anything may be read
            return WHOLE_INPUT
        paths.add(tuple(match.group(1)[1:].split(".")))
    # A path inside another's subtree adds nothing to the key.
    kept = [p for p in paths if not any(p[: len(q)] == q for q in paths if len(q) < len(p))]
    return InputReads(paths=tuple(sorted(kept)))
