"""Read planning: slices cover the split exactly once and give workers enough pieces."""
from __future__ import annotations

import numpy as np

from armdata.pipeline.sources.rlds import ShardRead, flatten, num_source_steps, split_reads


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


def test_shard_damage_one_dead_letter_per_shard():
    from armdata.pipeline.sources.rlds import SliceReport, shard_damage

    a0, a1, a2 = (ShardRead("/d/x-train.tfrecord-00000-of-00002", s, 3, 9) for s in (0, 3, 6))
    b = ShardRead("/d/x-train.tfrecord-00001-of-00002", 0, 4, 4)
    error = "DataLossError: truncated record at 1234"
    reports = [SliceReport(a2, 0, error), SliceReport(a0, 3, None), SliceReport(a1, 1, error),
               SliceReport(b, 4, None)]
    (dead,), unread = shard_damage(reports, "ds")
    assert unread == 5
    assert dead.episode_id == "ds/x-train.tfrecord-00000-of-00002" and dead.stage == "read"
    assert dead.step is None and dead.steps == 0
    assert "at byte offset 1234" in dead.reason and "/d/x-train.tfrecord-00000-of-00002" in dead.reason
    assert "holds 9 episodes, 4 of the 9 to read were read" in dead.reason
    # A shard that ends early without an error is damage too; a complete one is not.
    (short,), unread = shard_damage([SliceReport(b, 2, None)], "ds")
    assert unread == 2 and "ends early" in short.reason
    assert shard_damage([SliceReport(b, 4, None)], "ds") == ([], 0)


def test_shards_are_read_to_their_end_unless_max_episodes_bounds_the_read():
    from types import SimpleNamespace as NS

    from armdata.pipeline.sources.rlds import planned_reads

    split = NS(filepaths=["s0", "s1", "s2"], shard_lengths=[3, 0, 3], file_instructions=[
        NS(filename="s0", skip=1, take=-1, examples_in_shard=3),       # train[1:4]-like slice
        NS(filename="s2", skip=0, take=1, examples_in_shard=3)])
    # a whole split: every shard file, a shard declared empty too, to its real end
    assert planned_reads(split, True, None) == [ShardRead("s0", 0, 3, 3, True),
                                                ShardRead("s1", 0, 0, 0, True),
                                                ShardRead("s2", 0, 3, 3, True)]
    # a slice: by declared lengths; a shard covered through its declared end is read to its end
    assert planned_reads(split, False, None) == [ShardRead("s0", 1, 2, 3, True),
                                                 ShardRead("s2", 0, 1, 3, False)]
    # --max-episodes stays a bound: nothing is read past the declared lengths
    assert planned_reads(split, True, 2) == [ShardRead("s0", 1, 2, 3, False)]
    pieces = split_reads([ShardRead("a", 0, 5, 5, True), ShardRead("b", 0, 0, 0, True)], 3)
    assert [(p.skip, p.take, p.to_end) for p in pieces] == [
        (0, 2, False), (2, 2, False), (4, 1, True), (0, 0, True)]
