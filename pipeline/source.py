"""RLDS/TFDS source: plan the read on the launcher (fail fast on wrong paths and splits), then read
one Beam element per shard slice on the workers.

The builder is opened again inside `DoFn.setup` on each worker because Beam pickles DoFns with
cloudpickle and tfds builders do not survive that.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator

import apache_beam as beam
import numpy as np

log = logging.getLogger(__name__)


class SourceError(ValueError):
    """The source directory or split cannot be read."""


@dataclass(frozen=True)
class ShardRead:
    """Episodes [skip, skip + take) of one tfrecord shard."""
    filename: str
    skip: int
    take: int


@dataclass(frozen=True)
class SourcePlan:
    directory: str
    builder_name: str        # dataset_info.json "name": the shard file prefix
    version: str
    split: str
    num_episodes: int
    reads: tuple[ShardRead, ...]


def open_builder(directory: str):
    import tensorflow_datasets as tfds

    return tfds.builder_from_directory(directory)


# Reading is fused with every stage up to the spill, so the number of slices is the job's
# parallelism: shards are cut into pieces until there are about this many (few-shard datasets only;
# a piece re-reads the records it skips, so large many-shard datasets are never cut).
TARGET_SLICES = 64


def split_reads(reads: list[ShardRead], target: int = TARGET_SLICES) -> list[ShardRead]:
    """Cut shard slices into pieces of at most ceil(total / target) episodes."""
    size = max(1, -(-sum(r.take for r in reads) // target))
    return [ShardRead(r.filename, r.skip + start, min(size, r.take - start))
            for r in reads for start in range(0, r.take, size)]


def plan_source(directory: str, split: str, max_episodes: int | None) -> SourcePlan:
    """Open the dataset's metadata and list the shard slices to read. Raises SourceError with a
    message naming what is wrong."""
    from apache_beam.io.filesystems import FileSystems

    if not FileSystems.exists(FileSystems.join(directory, "dataset_info.json")):
        raise SourceError(f"{directory} is not a TFDS dataset version directory (no dataset_info.json"
                          f"); point --source at e.g. .../bridge_dataset/1.0.0")
    try:
        builder = open_builder(directory)
    except Exception as exc:
        raise SourceError(f"cannot open TFDS dataset at {directory}: {exc}") from exc
    try:
        instructions = builder.info.splits[split].file_instructions
    except Exception as exc:
        raise SourceError(f"bad split {split!r} for {directory} (splits: "
                          f"{', '.join(builder.info.splits)}): {exc}") from exc
    reads, total = [], 0
    for fi in instructions:
        take = fi.take if fi.take >= 0 else fi.examples_in_shard - fi.skip
        if max_episodes is not None:
            take = min(take, max_episodes - total)
        if take <= 0:
            break
        reads.append(ShardRead(fi.filename, fi.skip, take))
        total += take
    for r in reads:
        if not FileSystems.exists(r.filename):
            raise SourceError(f"shard {r.filename} listed in dataset_info.json is missing")
    return SourcePlan(directory, builder.info.name, str(builder.info.version), split, total,
                      tuple(split_reads(reads)))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested feature dicts → one level with '/'-joined keys."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class ReadShard(beam.DoFn):
    """ShardRead → raw episodes `{"tfds_id", "steps": {key: array}, "episode_metadata": {...}}`."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.builder = None

    def setup(self) -> None:
        self.builder = open_builder(self.directory)
        self.episodes = beam.metrics.Metrics.counter("read", "episodes")

    def process(self, read: ShardRead) -> Iterator[dict[str, Any]]:
        import tensorflow_datasets as tfds

        info = tfds.core.naming.FilenameInfo.from_str(read.filename)
        ds = self.builder.as_dataset(
            split=f"{info.split}[{info.shard_index}shard]",
            decoders={"steps": tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(add_tfds_id=True),
            shuffle_files=False)
        ds = ds.skip(read.skip).take(read.take)
        for example in tfds.as_numpy(ds):
            tfds_id = example.pop("tfds_id").decode()
            steps = flatten(example.pop("steps"))
            meta = flatten(example.pop("episode_metadata", {}))
            self.episodes.inc()
            yield {"tfds_id": tfds_id, "steps": steps, "episode_metadata": meta}
        log.info("read %d episodes from %s", read.take, read.filename)


def num_source_steps(steps: dict[str, np.ndarray]) -> int:
    """Length of a raw episode (all step fields share the leading dimension)."""
    return int(next(iter(steps.values())).shape[0]) if steps else 0
