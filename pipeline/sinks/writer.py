"""Writing: spill each finished episode to an Arrow file (in the build's work directory, see
`armdata.pipeline.resume`), then write each Parquet shard by streaming its episodes in (episode_id, step)
order, adding the action columns once the dataset statistics are known. Memory is bounded by one
row group plus the largest episode, never by the dataset. Shard assignment is a stable hash of the
episode id, so identical inputs and arguments give byte-identical shards."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from armdata.pipeline.sinks import storage
from armdata.schemas.episode import Episode, Rejection
from armdata.schemas.output import SCHEMA, episode_table
from armdata.transforms.actions import action_columns

log = logging.getLogger(__name__)

ROW_GROUP_BYTES = 128 << 20      # uncompressed bytes per row group (SPEC §6: ~64–128 MB)
SHARD_BYTES = 384 << 20          # target uncompressed bytes per shard when the count is automatic


@dataclass
class EpisodeSummary:
    """What travels past the statistics barrier: small, while the rows wait on disk."""
    episode_id: str
    path: str
    rows: int
    nbytes: int
    actions: np.ndarray      # (T, 7) float32
    states: np.ndarray       # (T, S) float32


def shard_of(episode_id: str, num_shards: int) -> int:
    """Stable across runs, machines and Python versions (unlike hash())."""
    digest = hashlib.sha256(episode_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


class GroupByShard(beam.PTransform):
    """Episode summaries → (shard index, summaries) for every index below the shard count (a side
    input), an index no episode hashed to included (holding only None), so that every shard
    index gets a file and the set is complete."""

    def __init__(self, num_shards: Any) -> None:
        super().__init__()
        self.num_shards = num_shards

    def expand(self, summaries: beam.PCollection) -> beam.PCollection:
        keyed = summaries | "AssignShard" >> beam.Map(
            lambda s, n: (shard_of(s.episode_id, n), s), self.num_shards)
        all_indices = (summaries.pipeline | "One" >> beam.Create([None])
                       | "ShardIndices" >> beam.FlatMap(lambda _, n: [(i, None) for i in range(n)],
                                                        self.num_shards))
        return ((keyed, all_indices) | "AllShards" >> beam.Flatten()
                | "GroupByShard" >> beam.GroupByKey())


def shard_path(index: int, num_shards: int) -> str:
    return f"data/train-{index:05d}-of-{num_shards:05d}.parquet"


def auto_num_shards(total_bytes: int, episodes: int, min_shards: int) -> int:
    by_size = -(-total_bytes // SHARD_BYTES)
    return max(1, min(max(min_shards, by_size), max(episodes, 1)))


def spill_episode(episode: Episode, path: str) -> tuple[EpisodeSummary, bytes]:
    """An episode's rows (without action columns) as an Arrow IPC stream, for the file that will
    be found at `path`, and its summary. Serialized in memory (the episode is there already) so
    that the file gets one write instead of one per Arrow buffer."""
    table = episode_table(episode)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return (EpisodeSummary(episode.episode_id, path, table.num_rows, table.nbytes,
                           episode.actions(), episode.states()),
            sink.getvalue().to_pybytes())


def read_spilled(path: str) -> pa.Table:
    with storage.open_read(path) as f:
        return pa.ipc.open_stream(f).read_all()


def full_table(spilled: pa.Table, actions: np.ndarray, action_stats: dict[str, Any]) -> pa.Table:
    """Add the action columns (from the episode's (T, 7) actions, in row order) to its rows and
    order the columns as in SCHEMA."""
    extra = action_columns(actions, action_stats, action_stats["mask"])
    columns = [extra[f.name] if f.name in extra else spilled.column(f.name) for f in SCHEMA]
    return pa.Table.from_arrays([pa.array(c, f.type) if not isinstance(c, pa.ChunkedArray) else c
                                 for c, f in zip(columns, SCHEMA)], schema=SCHEMA)


class WriteShard(beam.DoFn):
    """(shard index, summaries) → one Parquet file; yields its manifest entry."""

    def __init__(self, staging: str, dataset: str, row_group_bytes: int = ROW_GROUP_BYTES) -> None:
        self.staging = staging
        self.dataset = dataset
        self.row_group_bytes = row_group_bytes

    def setup(self) -> None:
        self.rows = beam.metrics.Metrics.counter("write", "rows")
        self.shards = beam.metrics.Metrics.counter("write", "shards")

    def process(self, element: tuple[int, Iterable[EpisodeSummary | None]], num_shards: int,
                stats: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
        index, items = element
        summaries = sorted((s for s in items if s is not None), key=lambda s: s.episode_id)
        rel = shard_path(index, num_shards)
        out = storage.HashingWriter(storage.open_write(storage.join(self.staging, rel)))
        rows, pending, pending_bytes = 0, [], 0
        with contextlib.closing(out), pq.ParquetWriter(out, SCHEMA, compression="zstd") as writer:
            for summary in summaries:
                table = full_table(read_spilled(summary.path), summary.actions,
                                   stats[self.dataset]["action"])
                pending.append(table)
                pending_bytes += table.nbytes
                rows += table.num_rows
                if pending_bytes >= self.row_group_bytes:
                    self._flush(writer, pending)
                    pending, pending_bytes = [], 0
            self._flush(writer, pending)
        self.rows.inc(rows)
        self.shards.inc()
        log.info("wrote %s: %d episodes, %d rows", rel, len(summaries), rows)
        yield {"path": rel, "rows": rows, "episodes": len(summaries),
               "sha256": out.sha256.hexdigest(), "bytes": out.size}

    @staticmethod
    def _flush(writer: pq.ParquetWriter, tables: list[pa.Table]) -> None:
        if tables:
            table = pa.concat_tables(tables)
            writer.write_table(table, row_group_size=max(table.num_rows, 1))


def rejection_lines(rejections: Iterable[Rejection]) -> str:
    ordered = sorted(rejections, key=lambda r: (r.episode_id, -1 if r.step is None else r.step,
                                                r.stage, r.reason))
    return "".join(json.dumps(r.to_dict(), sort_keys=True) + "\n" for r in ordered)
