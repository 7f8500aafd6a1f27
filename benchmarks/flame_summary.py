"""Top functions of a py-spy profile (`--format raw`: folded stacks), by own and total time.

    .venv/bin/python benchmarks/flame_summary.py PROFILE.txt [--top 15] [--under handler]

Own: samples where the function is the innermost frame. Total: samples where it is
anywhere on the stack (counted once per sample). `--under` keeps only the samples whose
stack holds a frame containing that text (e.g. `_handle` for request handling only).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def frame_name(frame: str) -> str:
    """`function (path/to/module.py:123)` -> `function (module.py)`, lines merged."""
    function, _, where = frame.partition(" (")
    return f"{function} ({where.rsplit('/', 1)[-1].split(':', 1)[0]})" if where else function


def summarize(path: Path, under: str | None) -> tuple[int, Counter[str], Counter[str]]:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or (under and under not in stack):
            continue
        count = int(count_text)
        frames = [frame_name(frame) for frame in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    return samples, own, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--under", help="only samples with a frame containing this text")
    args = parser.parse_args()
    samples, own, total = summarize(args.profile, args.under)
    for title, counter in (("own", own), ("total", total)):
        print(f"\n{title} time ({samples} samples)")
        for name, count in counter.most_common(args.top):
            print(f"{count / samples:6.1%}  {name}")


if __name__ == "__main__":
    main()
