"""Small helpers for the text armdata prints and writes."""
from __future__ import annotations


def count(n: int, noun: str) -> str:
    """`1 shard`, `2 shards`, `0 shards`: a count with its noun in the right number (regular
    plurals only)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
