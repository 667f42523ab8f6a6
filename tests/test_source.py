"""Read planning: slices cover the split exactly once and give workers enough pieces."""
from __future__ import annotations

import numpy as np

from pipeline.source import ShardRead, flatten, num_source_steps, split_reads


def covered(reads: list[ShardRead]) -> list[tuple[str, int]]:
    return [(r.filename, i) for r in reads for i in range(r.skip, r.skip + r.take)]


def test_split_reads_covers_every_episode_once():
    reads = [ShardRead("a", 10, 5), ShardRead("b", 0, 200), ShardRead("c", 3, 1)]
    pieces = split_reads(reads, target=10)
    assert covered(pieces) == covered(reads)
    assert max(p.take for p in pieces) == 21 and len(pieces) >= 10


def test_many_shards_are_not_cut():
    reads = [ShardRead(f"s{i}", 0, 85) for i in range(1024)]
    assert split_reads(reads) == reads


def test_flatten_and_length():
    nested = {"action": np.zeros((4, 7)), "observation": {"image": np.zeros(4, object),
                                                          "state": np.zeros((4, 2))}}
    flat = flatten(nested)
    assert sorted(flat) == ["action", "observation/image", "observation/state"]
    assert num_source_steps(flat) == 4 and num_source_steps({}) == 0
