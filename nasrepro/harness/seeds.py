"""Seed lists as the command lines write them (``0-19``, ``3``, ``0,2,5-7``): one parser for every
entry point (`nasrepro search --seeds`, the methods' own studies)."""

from __future__ import annotations

import re

from nasrepro.errors import UsageError


def parse_seeds(text: str) -> list[int]:
    """`"0-19"`, `"3"` or `"0,2,5-7"` -> sorted unique seeds."""
    seeds: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise UsageError(f"--seeds takes ranges like 0-19 or 0,2,5-7, got {text!r}")
        lo, hi = int(match[1]), int(match[2] or match[1])
        if hi < lo:
            raise UsageError(f"--seeds range {part.strip()!r} runs backwards")
        seeds.update(range(lo, hi + 1))
    return sorted(seeds)
