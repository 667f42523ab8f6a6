"""What the viewer reads from a built dataset: the manifest, statistics, dead letters, a per-episode
summary and per-dimension action histograms. Only small columns are read for the overview (no image
bytes), so a 1,000-episode dataset summarises in a second or two."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from armdata.pipeline.sinks.finalize import REJECTED_PATH
from armdata.pipeline.sinks.manifest import load_manifest

SUMMARY_COLUMNS = ("episode_id", "step", "instruction", "gripper_visible", "action",
                   "action_normalized")
HISTOGRAM_BINS = 40


def shard_dataset(output: Path, manifest: dict[str, Any]) -> ds.Dataset:
    return ds.dataset([str(output / s["path"]) for s in manifest["shards"]], format="parquet")


def read_rejections(output: Path) -> list[dict[str, Any]]:
    path = output / REJECTED_PATH
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_statistics(output: Path, manifest: dict[str, Any]) -> dict[str, Any] | None:
    path = output / manifest.get("statistics", "dataset_statistics.json")
    if not path.exists():
        return None
    return json.loads(path.read_text()).get(manifest["config"]["name"])


def list_matrix(column: pa.ChunkedArray) -> np.ndarray:
    """A list<float> column of equal-length rows → (rows, dims) float array (nulls dropped)."""
    column = pc.drop_null(column)
    if len(column) == 0:
        return np.zeros((0, 0), np.float32)
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    return flat.reshape(len(column), -1)


def histograms(values: np.ndarray, marks: dict[str, list[float]] | None) -> list[dict[str, Any]]:
    """Per dimension: bin centres, counts and the marked values (e.g. q01/q99) of that dimension."""
    out = []
    for d in range(values.shape[1]):
        counts, edges = np.histogram(values[:, d], bins=HISTOGRAM_BINS)
        out.append({"x": ((edges[:-1] + edges[1:]) / 2).round(6).tolist(),
                    "y": counts.tolist(),
                    "marks": {k: float(v[d]) for k, v in (marks or {}).items() if d < len(v)}})
    return out


def episode_table(table: pa.Table, rejections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per kept or rejected episode: id, instruction, kept length, rejected steps,
    share of kept steps with a visible gripper (None without the trace stage)."""
    ids = table.column("episode_id").to_numpy(zero_copy_only=False)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, int)
    ends = np.r_[starts[1:], len(ids)]
    instr = table.column("instruction").to_numpy(zero_copy_only=False)[order] \
        if "instruction" in table.column_names else None
    visible = None
    if "gripper_visible" in table.column_names:
        col = table.column("gripper_visible")
        visible = (pc.fill_null(col, False).to_numpy(zero_copy_only=False)[order],
                   pc.is_valid(col).to_numpy(zero_copy_only=False)[order])
    rejected_steps: Counter[str] = Counter()
    whole: dict[str, str] = {}
    for r in rejections:
        rejected_steps[r["episode_id"]] += r.get("steps", 1)
        if r.get("step") is None:
            whole[r["episode_id"]] = f"{r['stage']}: {r['reason']}"
    rows = []
    for a, b in zip(starts, ends):
        eid = str(ids[a])
        share = None
        if visible is not None and visible[1][a:b].any():
            share = float(visible[0][a:b][visible[1][a:b]].mean())
        rows.append({"id": eid, "instruction": None if instr is None else instr[a],
                     "length": int(b - a), "rejected_steps": rejected_steps.pop(eid, 0),
                     "visible_share": share, "rejected": None})
    for eid, n in sorted(rejected_steps.items()):        # episodes with no kept step
        rows.append({"id": eid, "instruction": None, "length": 0, "rejected_steps": n,
                     "visible_share": None, "rejected": whole.get(eid)})
    return rows


def rejection_groups(rejections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rejections grouped by (stage, reason): records, steps and the episodes concerned."""
    groups: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"records": 0, "steps": 0, "episodes": []})
    for r in rejections:
        g = groups[(r["stage"], r["reason"])]
        g["records"] += 1
        g["steps"] += r.get("steps", 1)
        if r["episode_id"] not in g["episodes"]:
            g["episodes"].append(r["episode_id"])
    return [{"stage": s, "reason": reason, **g}
            for (s, reason), g in sorted(groups.items(), key=lambda kv: -kv[1]["steps"])]


def overview(output: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Everything the overview page shows (JSON-able), and the dead letters."""
    manifest = load_manifest(str(output))
    stats = read_statistics(output, manifest)
    data = shard_dataset(output, manifest)
    table = data.to_table(columns=[c for c in SUMMARY_COLUMNS if c in data.schema.names])
    rejections = read_rejections(output)
    episodes = episode_table(table, rejections)
    action_stats = (stats or {}).get("action", {})
    plots = {}
    for column in ("action", "action_normalized"):
        if column in table.column_names:
            values = list_matrix(table.column(column))
            if values.size:   # normalised actions map q01 → -1 and q99 → +1
                marks = ({k: action_stats[k] for k in ("q01", "q99") if k in action_stats}
                         if column == "action" else
                         {"q01": [-1.0] * values.shape[1], "q99": [1.0] * values.shape[1]})
                plots[column] = histograms(values, marks)
    lengths = [e["length"] for e in episodes if e["length"]]
    counts, edges = np.histogram(lengths or [0], bins=min(30, max(1, len(set(lengths)))))
    return {"name": manifest["config"]["name"], "output": str(output),
            "counts": manifest["counts"], "stages": manifest.get("stages", []),
            "stage_options": manifest.get("stage_options", {}),
            "counters": manifest.get("counters", {}),
            "rejections": rejection_groups(rejections), "episodes": episodes,
            "length_histogram": {"x": ((edges[:-1] + edges[1:]) / 2).tolist(),
                                 "y": counts.tolist()},
            "action_histograms": plots,
            "derived": derived_counters(manifest.get("counters", {}))}, rejections


def derived_counters(counters: dict[str, int]) -> list[list[str]]:
    """The ratios worth reading at a glance, from the stages' counters (those present)."""
    def get(key: str) -> int:
        return int(counters.get(key, 0))

    out = []
    if get("trace/frames"):
        out.append(["localizer asked on", f"{get('trace/localizer_calls')}/{get('trace/frames')} "
                    f"frames ({get('trace/localizer_calls') / get('trace/frames'):.1%})"])
    if get("reasoning/episodes"):
        episodes = get("reasoning/episodes")
        out.append(["plan fallbacks", f"{get('reasoning/plan_fallback')} of {episodes} episodes"])
        out.append(["caption calls per episode", f"{get('reasoning/caption_calls') / episodes:.2f}"])
    return out
