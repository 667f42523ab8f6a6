"""ECoT export: a built dataset's reasoning columns in Embodied Chain-of-Thought's released JSON
layout (SPEC §7), so ECoT-style training code reads armdata datasets:

    {file_path: {episode_id: {"reasoning": {step: {task, plan, subtask, subtask_reason, move,
                                                    move_reason}},
                              "features": {move_primitive, gripper_position, bboxes},
                              "metadata": {episode_id, file_path, n_steps, language_instruction,
                                           caption}}}}

`file_path` and `episode_id` come from the source's episode metadata when it has them (Bridge
does), else the dataset name and armdata's episode id. Steps are keyed by source step index.
Shards are read one row group at a time (text columns only, through `armdata.exports.rows`)."""
from __future__ import annotations

import json
import logging
from typing import Any

from armdata.pipeline.sinks import storage
from armdata.exports.rows import ExportError, iter_rows
from armdata.pipeline.sinks.manifest import load_manifest
from armdata.schemas.columns import normalize_point, parse_objects, plan_text

log = logging.getLogger(__name__)

COLUMNS = ["dataset", "episode_id", "step", "num_steps", "instruction", "image_width",
           "image_height", "gripper_xy", "motion", "scene_caption", "objects", "plan", "subtask",
           "subtask_reason", "move_reason", "episode_metadata"]


def _episode_entry(row: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    meta = json.loads(row["episode_metadata"] or "{}")
    file_path = str(meta.get("file_path") or row["dataset"])
    episode_id = str(meta.get("episode_id", row["episode_id"]))
    entry = {"reasoning": {}, "features": {"move_primitive": [], "gripper_position": [],
                                           "bboxes": []},
             "metadata": {"episode_id": episode_id, "file_path": file_path,
                          "n_steps": 0, "language_instruction": row["instruction"],
                          "caption": row["scene_caption"]}}
    return file_path, episode_id, entry


def export_ecot(dataset_dir: str, out_file: str) -> dict[str, int]:
    """Write `out_file`; returns what was written (episodes, steps, steps with a plan / objects /
    gripper position). Raises ExportError when the dataset has no reasoning columns."""
    manifest = load_manifest(dataset_dir)
    if "reasoning" not in manifest.get("stages", []):
        raise ExportError(f"{dataset_dir} was built without the reasoning stage "
                          f"(stages: {manifest.get('stages')}); build with --stages ...,reasoning")
    out: dict[str, dict[str, Any]] = {}
    stats = {"episodes": 0, "steps": 0, "steps_with_plan": 0, "steps_with_objects": 0,
             "steps_with_gripper_position": 0}
    entries: dict[str, dict[str, Any]] = {}
    for row in iter_rows(dataset_dir, COLUMNS):
        if row["episode_id"] not in entries:
            file_path, episode_id, entry = _episode_entry(row)
            out.setdefault(file_path, {})[episode_id] = entry
            entries[row["episode_id"]] = entry
            stats["episodes"] += 1
        _add_step(entries[row["episode_id"]], row, stats)
    for entry in entries.values():
        entry["metadata"]["n_steps"] = len(entry["reasoning"])
    storage.write_bytes(out_file, json.dumps(out, sort_keys=True).encode())
    log.info("wrote %s: %s", out_file, stats)
    return stats


def _add_step(entry: dict[str, Any], row: dict[str, Any], stats: dict[str, int]) -> None:
    plan = json.loads(row["plan"]) if row["plan"] else None
    entry["reasoning"][str(row["step"])] = {
        "task": row["instruction"], "plan": plan_text(plan) if plan else None,
        "subtask": row["subtask"], "subtask_reason": row["subtask_reason"],
        "move": row["motion"], "move_reason": row["move_reason"]}
    features = entry["features"]
    features["move_primitive"].append(row["motion"])
    xy = row["gripper_xy"]
    features["gripper_position"].append(
        None if xy is None else normalize_point(xy[0], xy[1], row["image_width"],
                                                row["image_height"]))
    boxes = parse_objects(row["objects"]) if row["objects"] else []
    features["bboxes"].append([[phrase, list(box)] for phrase, box in boxes])
    stats["steps"] += 1
    stats["steps_with_plan"] += plan is not None
    stats["steps_with_objects"] += row["objects"] is not None
    stats["steps_with_gripper_position"] += xy is not None
