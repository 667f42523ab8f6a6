"""Reading a finished build for the exporters: complete builds only, one row group at a time, rows
in (episode_id, step) order within each shard."""
from __future__ import annotations

import os
from typing import Any, Iterator

import pyarrow.parquet as pq

from armdata.pipeline.sinks import storage
from armdata.errors import BuildError
from armdata.pipeline.sinks.manifest import load_manifest


class ExportError(BuildError):
    """The build cannot be exported in the requested format."""


def iter_rows(dataset_dir: str, columns: list[str]) -> Iterator[dict[str, Any]]:
    """The build's rows (only `columns`), shard by shard in manifest order. ExportError when a
    shard lacks one of them (a build by an older armdata)."""
    manifest = load_manifest(dataset_dir)
    for shard in manifest["shards"]:
        with storage.open_read(storage.join(dataset_dir, shard["path"])) as f:
            pf = pq.ParquetFile(f)
            absent = [c for c in columns if c not in pf.schema_arrow.names]
            if absent:
                raise ExportError(f"{shard['path']} has no column(s) {', '.join(absent)} "
                                  f"(built by an older armdata); rebuild to export it")
            for g in range(pf.num_row_groups):
                yield from pf.read_row_group(g, columns=columns).to_pylist()


def iter_episodes(dataset_dir: str, columns: list[str]) -> Iterator[list[dict[str, Any]]]:
    """The build's episodes as lists of rows (an episode never spans shards)."""
    rows: list[dict[str, Any]] = []
    for row in iter_rows(dataset_dir, ["episode_id", *columns]):
        if rows and row["episode_id"] != rows[0]["episode_id"]:
            yield rows
            rows = []
        rows.append(row)
    if rows:
        yield rows


def require_empty(out: str) -> None:
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ExportError(f"--out {out} exists and is not an empty directory")
