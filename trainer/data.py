"""Streaming loader over armdata Parquet shards (local, gs://, hf://), one row group at a time.

Work unit: a row group, or a row slice of one (`rows part::parts`) when a dataset has fewer row
groups than loader streams. Streams are the (rank, worker) pairs, numbered `rank * workers + worker`;
unit i goes to stream i mod streams, so every row is read by exactly one stream per epoch. Each
stream walks its units in a seeded per-epoch order, `block` units at a time, and emits each block's
rows in a seeded permutation (a shuffle buffer of `block` row groups). Several datasets are mixed by
weight with seeded draws. Everything is a pure function of (seed, draws so far), so the loader's
state is one integer per stream and a resumed run reads exactly the rows an uninterrupted one would.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import fsspec
import numpy as np
import pyarrow.parquet as pq
import torch

from armdata.errors import UsageError
from armdata.trainer.sample_form import CorruptImage, SkippedRow, sample_rng
from armdata.trainer.samples import IGNORE

log = logging.getLogger(__name__)

COLUMNS = ("dataset", "episode_id", "step", "instruction", "image", "wrist_image", "action",
           "action_bins", "action_chunk_bins", "depth_codes", "trace", "arm_traces", "reasoning")
DRAW_CHUNK = 4096
PAD = {"input_ids": None, "labels": IGNORE}   # None: the tokenizer's pad id; other keys pad with 0


@dataclass(frozen=True)
class Unit:
    path: str
    group: int
    rows: int         # rows in the row group
    part: int = 0
    parts: int = 1

    @property
    def size(self) -> int:
        return len(range(self.part, self.rows, self.parts))


@dataclass
class Source:
    """One dataset: its shards' row groups, mixture weight and action statistics."""
    root: str
    weight: float
    units: list[Unit]
    stats: dict[str, Any] = field(default_factory=dict)
    fs: Any = None
    stages: list[str] | None = None    # the build's stages (None: no manifest.json)

    @property
    def rows(self) -> int:
        return sum(u.size for u in self.units)


def parse_data(spec: str) -> list[tuple[str, float]]:
    """`path[:weight],...` → [(path, weight)]; a `:` inside a URL scheme is not a weight."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        path, weight = item, 1.0
        head, sep, tail = item.rpartition(":")
        if sep and "/" not in tail and not tail.startswith("//"):
            try:
                path, weight = head, float(tail)
            except ValueError as exc:
                raise ValueError(f"--data {item!r}: weight {tail!r} is not a number") from exc
        if weight <= 0:
            raise ValueError(f"--data {item!r}: weight must be positive")
        out.append((path, weight))
    if not out:
        raise ValueError("--data names no dataset")
    return out


def list_shards(root: str) -> list[str]:
    fs, base = fsspec.core.url_to_fs(root)
    shards = sorted(fs.glob(base.rstrip("/") + "/data/*.parquet"))
    if not shards:
        raise FileNotFoundError(f"{root}: no data/*.parquet shards")
    return shards


def open_source(root: str, weight: float = 1.0, holdout: int = 0,
                eval_part: bool = False) -> Source:
    """The dataset at `root` (an armdata output directory). With `holdout` K > 0 its last K shards
    are the evaluation part (`eval_part=True`) and the rest the training part."""
    fs, base = fsspec.core.url_to_fs(root)
    shards = list_shards(root)
    if holdout:
        if holdout >= len(shards):
            raise ValueError(f"{root}: cannot hold out {holdout} of {len(shards)} shards")
        shards = shards[-holdout:] if eval_part else shards[:-holdout]
    units = []
    for path in shards:
        with fs.open(path, "rb") as f:
            meta = pq.ParquetFile(f).metadata
        units += [Unit(path, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    stats_path = base.rstrip("/") + "/dataset_statistics.json"
    stats = json.loads(fs.cat_file(stats_path)) if fs.exists(stats_path) else {}
    manifest_path = base.rstrip("/") + "/manifest.json"
    stages = (json.loads(fs.cat_file(manifest_path)).get("stages") if fs.exists(manifest_path)
              else None)
    return Source(root, weight, units, stats, fs, stages)


def split_units(units: list[Unit], streams: int) -> list[list[Unit]]:
    """Units of each stream; row groups are cut into row slices when there are fewer than streams."""
    if not units:
        return [[] for _ in range(streams)]
    parts = max(1, math.ceil(streams / len(units)))
    cut = [Unit(u.path, u.group, u.rows, k, parts) for u in units for k in range(parts)]
    return [cut[s::streams] for s in range(streams)]


class RowStream:
    """The rows one stream reads from one source, endlessly (epoch after epoch) or for one epoch."""

    def __init__(self, source: Source, units: list[Unit], seed: list[int], block: int,
                 shuffle: bool = True, columns: list[str] | None = None):
        self.source, self.units, self.seed, self.block = source, units, seed, max(1, block)
        self.shuffle, self.columns = shuffle, columns
        self.epoch_rows = sum(u.size for u in units)

    def read_block(self, units: list[Unit]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for u in units:
            with self.source.fs.open(u.path, "rb") as f:
                pf = pq.ParquetFile(f)
                names = [c for c in (self.columns or COLUMNS) if c in pf.schema_arrow.names]
                table = pf.read_row_group(u.group, columns=names)
            if u.parts > 1:
                table = table.take(list(range(u.part, u.rows, u.parts)))
            rows += table.to_pylist()
        return rows

    def rows(self, position: int = 0, epochs: int | None = None) -> Iterator[dict[str, Any]]:
        """Rows from `position` (rows already read by this stream) on."""
        if self.epoch_rows == 0:
            return
        epoch, offset = divmod(position, self.epoch_rows)
        while epochs is None or epoch < epochs:
            rng = np.random.default_rng(self.seed + [epoch])
            order = rng.permutation(len(self.units)) if self.shuffle else range(len(self.units))
            units = [self.units[i] for i in order]
            for b in range(0, len(units), self.block):
                block = units[b:b + self.block]
                n = sum(u.size for u in block)
                if offset >= n:
                    offset -= n
                    continue
                rows = self.read_block(block)
                perm = (np.random.default_rng(self.seed + [epoch, b]).permutation(n)
                        if self.shuffle else np.arange(n))
                for i in perm[offset:]:
                    yield rows[i]
                offset = 0
            epoch += 1


class Mixture:
    """Seeded choice of the source of each draw of one stream, by weight."""

    def __init__(self, weights: list[float], seed: list[int]):
        w = np.asarray(weights, np.float64)
        self.p, self.seed = w / w.sum(), seed

    def chunk(self, c: int) -> np.ndarray:
        return np.random.default_rng(self.seed + [c]).choice(len(self.p), DRAW_CHUNK, p=self.p)

    def positions(self, draws: int) -> list[int]:
        """Draws of each source among the first `draws`."""
        counts = np.zeros(len(self.p), np.int64)
        full, rest = divmod(draws, DRAW_CHUNK)
        for c in range(full):
            counts += np.bincount(self.chunk(c), minlength=len(self.p))
        counts += np.bincount(self.chunk(full)[:rest], minlength=len(self.p))
        return counts.tolist()

    def choices(self, start: int) -> Iterator[int]:
        c, i = divmod(start, DRAW_CHUNK)
        while True:
            yield from self.chunk(c)[i:].tolist()
            c, i = c + 1, 0


class StreamingLoader(torch.utils.data.IterableDataset):
    """Micro-batches of formatted samples for one rank. Loader worker w plays stream role
    `(w + batches) % workers`, so that after a resume the DataLoader's round robin over workers
    yields the batches in the order an uninterrupted run would have."""

    def __init__(self, sources: list[Source], formatter_factory: Any, batch_size: int, *,
                 rank: int, world: int, workers: int, seed: int, block: int = 4,
                 shuffle: bool = True, epochs: int | None = None,
                 state: dict[str, Any] | None = None, pad_id: int = 0):
        self.sources, self.make_formatter, self.batch_size = sources, formatter_factory, batch_size
        self.rank, self.world, self.workers = rank, world, max(1, workers)
        self.seed, self.block, self.shuffle, self.epochs, self.pad_id = seed, block, shuffle, epochs, pad_id
        self.state = state or {}
        streams = self.world * self.workers
        self.split = [split_units(s.units, streams) for s in sources]
        for s, parts in zip(sources, self.split):
            if shuffle and any(sum(u.size for u in p) == 0 for p in parts):
                raise ValueError(f"{s.root}: {s.rows} rows cannot feed {streams} loader streams "
                                 "(ranks × workers); use fewer workers")

    def stream_index(self, role: int) -> int:
        return self.rank * self.workers + role

    def samples(self, g: int, draws: int, counters: dict[str, int]) -> Iterator[tuple[dict, int]]:
        """(sample, draws so far) of stream g, starting after `draws` draws."""
        formatter = self.make_formatter()
        streams = [RowStream(s, parts[g], [self.seed, k, g], self.block, self.shuffle)
                   for k, (s, parts) in enumerate(zip(self.sources, self.split))]
        if self.epochs is not None:   # one pass, source after source (evaluation)
            rows = ((k, row, n // st.epoch_rows) for k, st in enumerate(streams)
                    for n, row in enumerate(st.rows(0, self.epochs)))
        else:
            mixture = Mixture([s.weight for s in self.sources], [self.seed, g, 7919])
            rows = mixed_rows(streams, mixture, draws)
        skipped_in_a_row = [0] * len(streams)
        for k, row, epoch in rows:
            draws += 1
            try:
                sample = formatter(row, sample_rng(self.seed, epoch, row), counters)
            except SkippedRow as exc:
                counters[exc.reason] = counters.get(exc.reason, 0) + 1
                if isinstance(exc, CorruptImage):
                    log.warning("skipping %s step %s: %s", row.get("episode_id"), row.get("step"),
                                exc)
                skipped_in_a_row[k] += 1
                if skipped_in_a_row[k] >= streams[k].epoch_rows and self.epochs is None:
                    raise UsageError(f"{self.sources[k].root}: none of the {streams[k].epoch_rows} "
                                     f"rows of loader stream {g} gives a sample (last: {exc})")
                continue
            skipped_in_a_row[k] = 0
            counters["samples"] = counters.get("samples", 0) + 1
            yield sample, draws

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        roles = range(self.workers) if info is None else [worker]
        batches = self.state.get("batches", 0)
        gens = []
        for w in roles:
            g = self.stream_index((w + batches) % self.workers)
            counters = dict(self.state.get("counters", {}).get(str(g), {}))
            gens.append((g, counters, self.samples(g, self.state.get("draws", {}).get(str(g), 0),
                                                  counters)))
        # In-process (no workers): round robin over the roles like the DataLoader would.
        k = 0
        while gens:
            g, counters, gen = gens[k % len(gens)]
            batch, draws = [], None
            for sample, draws in gen:
                batch.append(sample)
                if len(batch) == self.batch_size:
                    break
            if not batch:
                gens.pop(k % len(gens))
                continue
            out = collate(batch, self.pad_id)
            out["loader"] = {"stream": g, "draws": draws, "counters": dict(counters)}
            yield out
            k += 1


def mixed_rows(streams: list[RowStream], mixture: Mixture,
               draws: int) -> Iterator[tuple[int, dict[str, Any], int]]:
    """(source, row, epoch of that source's stream) of the draws after the first `draws`."""
    pos = mixture.positions(draws)
    iters = [st.rows(p) for st, p in zip(streams, pos)]
    for k in mixture.choices(draws):
        row = next(iters[k], None)
        if row is None:
            return
        yield k, row, pos[k] // streams[k].epoch_rows
        pos[k] += 1


def collate(samples: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-pad the per-token tensors; concatenate image tensors along their first axis."""
    out: dict[str, Any] = {"meta": [s["meta"] for s in samples]}
    length = max(s["input_ids"].shape[0] for s in samples)
    for key, first in samples[0].items():
        if key == "meta":
            continue
        if torch.is_tensor(first) and first.ndim == 1 and first.shape == samples[0]["input_ids"].shape:
            pad = PAD.get(key, 0)
            pad = pad_id if pad is None else pad
            out[key] = torch.stack([torch.nn.functional.pad(s[key], (0, length - s[key].shape[0]),
                                                            value=pad) for s in samples])
        elif torch.is_tensor(first):
            out[key] = torch.cat([s[key] for s in samples])
    return out


def loader_state(batches: int, received: dict[int, dict[str, Any]], seed: int) -> dict[str, Any]:
    """The loader's checkpoint entry: batches consumed and each stream's draws and counters."""
    return {"seed": seed, "batches": batches,
            "draws": {str(g): r["draws"] for g, r in received.items()},
            "counters": {str(g): r["counters"] for g, r in received.items()}}
