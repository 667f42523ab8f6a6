"""A built dataset's directory written straight from `Episode` objects, through the schema's and
the writer's own table code (`episode_table`, `full_table`): exact rows for tests, no build."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from armdata.pipeline.sinks.writer import full_table, shard_path
from armdata.schemas.episode import Episode
from armdata.schemas.output import episode_table


def write_output(out: Path, episodes: list[Episode], action_stats: dict[str, Any],
                 stages: list[str] | None = None) -> Path:
    """One shard holding the episodes' rows, `dataset_statistics.json` with `action_stats`
    (q01, q99, mask) and, with `stages`, a `manifest.json` with what readers of a build use: the
    config's name, the stages, the shard and the row count (no checksums: `inspect --verify` refuses it)."""
    tables = [full_table(episode_table(e), e.actions(), action_stats) for e in episodes]
    path = out / shard_path(0, 1)
    path.parent.mkdir(parents=True)
    table = pa.concat_tables(tables)
    pq.write_table(table, path)
    datasets = {e.dataset for e in episodes}
    (out / "dataset_statistics.json").write_text(json.dumps({d: {"action": action_stats}
                                                             for d in sorted(datasets)}))
    if stages is not None:
        (out / "manifest.json").write_text(json.dumps({
            "config": {"name": sorted(datasets)[0]}, "stages": stages, "shards": [{"path": shard_path(0, 1)}],
            "counts": {"steps_out": table.num_rows}}))
    return out
