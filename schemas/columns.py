"""Text formats of output columns, owned here so that readers (exporters, preview, trainer) parse a
column without importing the models or stages that write it (SPEC §6, §7)."""
from __future__ import annotations

import re
from typing import Sequence

Box = tuple[str, tuple[int, int, int, int]]
ScoredBox = tuple[str, tuple[int, int, int, int], float]   # + the detector's score

_OBJECT = re.compile(r"(.+?) \[(-?\d+), (-?\d+), (-?\d+), (-?\d+)\](?:, |$)")


def serialize_objects(boxes: Sequence[Box]) -> str:
    """`phrase [x0, y0, x1, y1], phrase [...]` (integer pixels): the `objects` column."""
    return ", ".join(f"{phrase} [{', '.join(str(int(v)) for v in box)}]" for phrase, box in boxes)


def parse_objects(text: str) -> list[Box]:
    """Inverse of `serialize_objects` (for preview and export); ValueError on other text."""
    out, pos = [], 0
    while pos < len(text):
        m = _OBJECT.match(text, pos)
        if not m:
            raise ValueError(f"not an objects string at character {pos}: {text[pos:pos + 40]!r}")
        out.append((m.group(1), tuple(int(m.group(i)) for i in range(2, 6))))
        pos = m.end()
    return out


def plan_text(remaining: Sequence[str]) -> str:
    """The PLAN tag's value: the remaining plan steps, numbered."""
    return " ".join(f"{i + 1}. {step}" for i, step in enumerate(remaining))


def normalize_point(x: float, y: float, width: int, height: int) -> list[int]:
    """Pixels → [0, 255]: `min(255, round(x * 256 / width))` (and y with height), floored at 0."""
    return [max(0, min(255, round(x * 256 / width))), max(0, min(255, round(y * 256 / height)))]
