"""RLDS/TFDS source: plan the read on the launcher (fail fast on wrong paths and splits), then read
one Beam element per shard slice on the workers.

The builder is opened again inside `DoFn.setup` on each worker because Beam pickles DoFns with
cloudpickle and tfds builders do not survive that.
"""
from __future__ import annotations

import json
import logging
import posixpath
import re
from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import apache_beam as beam
import numpy as np
from apache_beam.pvalue import TaggedOutput

from armdata.pipeline.sources.rlds_features import Decoder, make_decoder, without_unused_frames
from armdata.pipeline.sources.tfrecord import RecordError, read_ahead, read_records
from armdata.schemas.episode import Rejection

log = logging.getLogger(__name__)


class SourceError(ValueError):
    """The source directory or split cannot be read."""


REPORTS = "slice_reports"   # ReadShard's tagged output of SliceReport
READ_STAGE = "read"         # the stage named by dead letters for damaged source shards


@dataclass(frozen=True)
class ShardRead:
    """Episodes [skip, skip + take) of one tfrecord shard; with `to_end`, [skip, end of file):
    dataset_info.json's shard lengths are not trusted, so a shard read through its declared end
    is read to its real end."""
    filename: str
    skip: int
    take: int
    shard_episodes: int = 0   # how many the shard holds per dataset_info.json
    to_end: bool = False


@dataclass(frozen=True)
class SliceReport:
    """How a ShardRead went: episodes read, and the error that stopped it (None: read to the end)."""
    read: ShardRead
    episodes: int
    error: str | None


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


# Reading runs in the same worker as every stage up to the spill, so the number of slices is the
# job's parallelism: shards are cut into pieces until there are about this many (few-shard datasets
# only; a piece re-reads the records it skips, and every piece costs a reader set-up, so datasets
# with this many shards or more are never cut).
TARGET_SLICES = 16


def split_reads(reads: list[ShardRead], target: int = TARGET_SLICES) -> list[ShardRead]:
    """Cut shard slices into pieces of at most ceil(total / target) episodes; a slice read to
    its shard's end stays so in its last piece (a shard declared empty is one piece)."""
    size = max(1, -(-sum(r.take for r in reads) // target))
    return [ShardRead(r.filename, r.skip + start, min(size, r.take - start), r.shard_episodes,
                      r.to_end and start + size >= r.take)
            for r in reads for start in range(0, max(r.take, r.to_end), size)]


def check_shard_lengths(info: dict[str, Any], info_path: str) -> None:
    """tfds turns a negative shard length into a plan that silently drops shards: refuse any
    shard length that is not a non-negative integer (an int, or a string of digits)."""
    for split in info.get("splits", []):
        for i, n in enumerate(split.get("shardLengths", [])):
            if not (isinstance(n, int) and not isinstance(n, bool) and n >= 0
                    or isinstance(n, str) and n.isdigit()):
                raise SourceError(f"{info_path}: split {split.get('name')!r} has shardLengths"
                                  f"[{i}] = {n!r}, not a non-negative integer")


def planned_reads(split_info: Any, whole: bool, max_episodes: int | None) -> list[ShardRead]:
    """The shard slices of a split. A whole split without --max-episodes reads every shard file
    to its end, whatever its declared length (also 0). A slice (`train[:10%]`) selects episodes
    by the declared lengths, as tfds does, and reads a shard it covers through its declared end
    to its real end; --max-episodes never reads past the declared lengths, so it stays a
    bound."""
    if whole and max_episodes is None:
        return [ShardRead(str(path), 0, n, n, True)
                for path, n in zip(split_info.filepaths, split_info.shard_lengths)]
    reads, total = [], 0
    for fi in split_info.file_instructions:
        take = fi.take if fi.take >= 0 else fi.examples_in_shard - fi.skip
        if max_episodes is not None:
            take = min(take, max_episodes - total)
        if take <= 0:
            break
        reads.append(ShardRead(fi.filename, fi.skip, take, fi.examples_in_shard,
                               max_episodes is None and fi.skip + take >= fi.examples_in_shard))
        total += take
    return reads


def plan_source(directory: str, split: str, max_episodes: int | None,
                strict: bool = False) -> SourcePlan:
    """Open the dataset's metadata and list the shard slices to read. Raises SourceError with a
    one-line message naming what is wrong. A missing shard file is planned anyway (its read
    becomes a dead letter) unless `strict`."""
    from apache_beam.io.filesystems import FileSystems

    info_path = FileSystems.join(directory, "dataset_info.json")
    if not FileSystems.exists(info_path):
        raise SourceError(f"{directory} is not a TFDS dataset version directory (no dataset_info.json"
                          f"); point --source at e.g. .../bridge_dataset/1.0.0")
    try:
        with FileSystems.open(info_path) as f:
            info = json.loads(f.read())
    except ValueError as exc:
        raise SourceError(f"{info_path} is not valid JSON: {exc}") from exc
    check_shard_lengths(info, info_path)
    try:
        builder = open_builder(directory)
    except Exception as exc:
        raise SourceError(f"cannot open TFDS dataset at {directory}: {one_line(str(exc))}") from exc
    file_format = getattr(builder.info.file_format, "value", builder.info.file_format)
    if file_format not in (None, "tfrecord"):
        raise SourceError(f"{directory} is stored as {file_format}; only tfrecord is supported")
    try:
        reads = planned_reads(builder.info.splits[split], split in builder.info.splits,
                              max_episodes)
    except Exception as exc:
        raise SourceError(f"bad split {split!r} for {directory} (splits: "
                          f"{', '.join(builder.info.splits)}): {one_line(str(exc))}") from exc
    total = sum(r.take for r in reads)
    for r in reads:
        if not FileSystems.exists(r.filename):
            if strict:
                raise SourceError(f"shard {r.filename} listed in dataset_info.json is missing")
            log.warning("shard %s listed in dataset_info.json is missing; its %d episodes will be "
                        "a dead letter", r.filename, r.take)
    return SourcePlan(directory, builder.info.name, str(builder.info.version), split, total,
                      tuple(split_reads(reads)))


def one_line(text: str) -> str:
    return " ".join(text.split())


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
    """ShardRead → raw episodes `{"tfds_id", "steps": {key: array}, "episode_metadata": {...}}`,
    plus one `SliceReport` (tagged REPORTS) saying how many were read and what stopped the read.

    Records are read and checksummed by `armdata.pipeline.sources.tfrecord` and decoded with the dataset's own
    feature spec (`armdata.pipeline.sources.rlds_features`, steps left encoded as `SkipDecoding` does), without
    TensorFlow unless the spec has feature kinds only its parser handles. Per-step frame features
    (images, depth maps) that no key in `frame_keys` names are not decoded at all. A damaged or
    missing shard ends its slice's read with a report instead of an exception: the episodes
    before the damage are kept and `shard_damage` turns the reports into one dead letter per
    shard.
    """

    def __init__(self, directory: str, frame_keys: Iterable[str]) -> None:
        self.directory = directory
        self.frame_keys = frozenset(frame_keys)
        self.decode: Decoder | None = None

    def setup(self) -> None:
        features = without_unused_frames(open_builder(self.directory).info.features,
                                          self.frame_keys)
        self.decode = make_decoder(features)
        self.episodes = beam.metrics.Metrics.counter("read", "episodes")
        self.damaged = beam.metrics.Metrics.counter("read", "damaged_slices")
        self.beyond = beam.metrics.Metrics.counter("source", "shard_length_mismatch")

    def process(self, read: ShardRead) -> Iterator[Any]:
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems

        # tfds' `add_tfds_id` id: shard file name and the record's index in the shard.
        prefix = f"{posixpath.basename(read.filename)}__"
        count, error = 0, None
        try:
            with FileSystems.open(read.filename, compression_type=CompressionTypes.UNCOMPRESSED
                                  ) as f, closing(read_ahead(read_records(
                                      f, read.skip, None if read.to_end else read.take))) as records:
                for record in records:
                    example = self.decode(record)
                    steps = flatten(example.pop("steps"))
                    meta = flatten(example.pop("episode_metadata", {}))
                    self.episodes.inc()
                    yield {"tfds_id": f"{prefix}{read.skip + count}", "steps": steps,
                           "episode_metadata": meta}
                    count += 1
        except (RecordError, OSError) as exc:   # truncated, checksum, parse; missing file
            error = f"{type(exc).__name__}: {one_line(str(exc))}"
            self.damaged.inc()
            log.warning("%s: %s", read.filename, error)
        if count > read.take:
            self.beyond.inc(count - read.take)
            log.warning("%s holds %d episodes more than dataset_info.json says; they are read",
                        read.filename, count - read.take)
        yield TaggedOutput(REPORTS, SliceReport(read, count, error))


def shard_damage(reports: Iterable[SliceReport], dataset: str) -> tuple[list[Rejection], int]:
    """One dead letter per source shard whose slices did not all read in full (an error, or fewer
    records than dataset_info.json promises), and the number of planned episodes not read.

    A shard cut into slices fails in every slice from the damage on, all at the same byte offset;
    the record names the first failure and the shard's totals."""
    by_shard: dict[str, list[SliceReport]] = defaultdict(list)
    for report in reports:
        by_shard[report.read.filename].append(report)
    dead, unread = [], 0
    for filename, shard in sorted(by_shard.items()):
        shard.sort(key=lambda r: r.read.skip)
        planned = sum(r.read.take for r in shard)
        got = sum(r.episodes for r in shard)
        if got >= planned and all(r.error is None for r in shard):   # more: not damage
            continue
        error = next((r.error for r in shard if r.error), "the shard ends early")
        offset = re.search(r"record at (\d+)", error)
        where = f" at byte offset {offset.group(1)}" if offset else ""
        reason = (f"damaged source shard {filename}{where}: {error}; dataset_info.json says it "
                  f"holds {shard[0].read.shard_episodes} episodes, {got} of the {planned} to read "
                  f"were read")
        dead.append(Rejection(dataset, f"{dataset}/{posixpath.basename(filename)}", None,
                              READ_STAGE, reason, steps=0))
        unread += max(planned - got, 0)
    return dead, unread


def num_source_steps(steps: dict[str, np.ndarray]) -> int:
    """Length of a raw episode (all step fields share the leading dimension)."""
    return int(next(iter(steps.values())).shape[0]) if steps else 0
