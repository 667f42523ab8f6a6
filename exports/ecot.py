"""ECoT export: a built dataset's reasoning columns in Embodied Chain-of-Thought's released JSON
layout, as ECoT's own training loader reads it (SPEC §9):

    {file_path: {episode_id: {"reasoning": {step: {task, plan, subtask, subtask_reason, move,
                                                    move_reason}},
                              "features": {move_primitive, gripper_position, bboxes},
                              "metadata": {episode_id, file_path, n_steps, language_instruction,
                                           caption}}}}

Keys and feature lists cover every SOURCE step 0..n_steps-1, as ECoT's generator writes them (its
loader drops Bridge's first step and looks frames up from 0, an offset the export must reproduce,
not correct). A source step the build dropped takes the values of the nearest kept step (counted).
`gripper_position[i]` is `[x, y]` in 0..255, never null (the loader adds the next 5 with `+=`): a
step without its own position takes the nearest step's; an episode with none is left out (counted).
`bboxes[i]` is `[[score, phrase, [x0, y0, x1, y1]], ...]`. A reasoning part the build did not run
would reach ECoT's prompt as the text "None": refused unless `allow_missing_parts`, which writes "".
`file_path` and `episode_id` come from the source's episode metadata when it has them (Bridge
does), else the dataset name and armdata's episode id."""
from __future__ import annotations

import bisect
import json
import logging
from collections import Counter
from typing import Any

from armdata.pipeline.sinks import storage
from armdata.exports.rows import ExportError, iter_episodes
from armdata.pipeline.sinks.manifest import load_manifest
from armdata.schemas.columns import normalize_point, parse_objects, plan_text

log = logging.getLogger(__name__)

VERSION = 2   # 2: source-step keys and lists, [score, phrase, box], no nulls, refused gaps
COLUMNS = ["dataset", "step", "num_steps", "instruction", "image_width", "image_height",
           "gripper_xy", "motion", "scene_caption", "objects", "object_scores", "plan", "subtask",
           "subtask_reason", "move_reason", "episode_metadata"]
# reasoning part (--reasoning-parts) → the ECoT fields it fills
PART_FIELDS = {"motion": "move", "caption": "caption", "objects": "bboxes",
               "plan": "plan, subtask, subtask_reason, move_reason"}
TEXT_FIELDS = ("plan", "subtask", "subtask_reason", "move", "move_reason")


def export_ecot(dataset_dir: str, out_file: str, allow_missing_parts: bool = False
                ) -> dict[str, Any]:
    """Write `out_file`; returns what was written. Raises ExportError when the build lacks the
    reasoning or trace stage, a reasoning part (unless `allow_missing_parts`), or `out_file`
    exists."""
    manifest = load_manifest(dataset_dir)
    stages = manifest.get("stages", [])
    for stage, why in (("reasoning", "the reasoning columns"),
                       ("trace", "a gripper position on every step")):
        if stage not in stages:
            raise ExportError(f"{dataset_dir} was built without the {stage} stage ECoT needs for "
                              f"{why} (stages: {stages}); build with --stages ...,{stage}")
    parts = manifest.get("stage_options", {}).get("reasoning", {}).get("parts", [])
    missing = [p for p in PART_FIELDS if p not in parts]
    if missing and not allow_missing_parts:
        raise ExportError(
            f"{dataset_dir} was built without the reasoning part(s) {', '.join(missing)} "
            f"(ECoT's {'; '.join(PART_FIELDS[p] for p in missing)}), which ECoT's prompt would "
            f"read as \"None\"; build with --reasoning-parts {','.join(PART_FIELDS)} or export "
            f"with --allow-missing-parts (writes \"\")")
    if storage.exists(out_file):
        raise ExportError(f"--out {out_file} exists; the ECoT export writes a new file")
    out: dict[str, dict[str, Any]] = {}
    counts: Counter[str] = Counter()
    for rows in iter_episodes(dataset_dir, COLUMNS):
        entry = episode_entry(rows, counts)
        if entry is None:
            log.warning("ecot: %s has no gripper position on any step; left out",
                        rows[0]["episode_id"])
            counts["episodes_without_gripper_position"] += 1
            continue
        meta = entry["metadata"]
        out.setdefault(meta["file_path"], {})[meta["episode_id"]] = entry
        counts["episodes"] += 1
    storage.write_bytes(out_file, json.dumps(out, sort_keys=True).encode())
    summary = {"format": "ecot", "version": VERSION, "out": out_file,
               "missing_parts_written_empty": missing, **dict(sorted(counts.items()))}
    log.info("wrote %s: %s", out_file, summary)
    return summary


def nearest(sorted_steps: list[int], step: int) -> int:
    """Position in `sorted_steps` of the value nearest to `step` (the earlier one on a tie)."""
    i = bisect.bisect_left(sorted_steps, step)
    if i == len(sorted_steps) or (i > 0 and step - sorted_steps[i - 1] <= sorted_steps[i] - step):
        return i - 1
    return i


def episode_entry(rows: list[dict[str, Any]], counts: Counter[str]) -> dict[str, Any] | None:
    """One episode's ECoT entry over all its source steps, or None when no row has a gripper
    position."""
    first = rows[0]
    n_steps = int(first["num_steps"])
    steps = [int(r["step"]) for r in rows]
    with_point = [r for r in rows if r["gripper_xy"] is not None]
    if not with_point:
        return None
    point_steps = [int(r["step"]) for r in with_point]
    meta = json.loads(first["episode_metadata"] or "{}")
    file_path = str(meta.get("file_path") or first["dataset"])
    episode_id = ecot_episode_id(meta.get("episode_id", first["episode_id"]))
    reasoning: dict[str, dict[str, str]] = {}
    features: dict[str, list[Any]] = {"move_primitive": [], "gripper_position": [], "bboxes": []}
    for i in range(n_steps):
        row = rows[nearest(steps, i)]
        counts["steps"] += 1
        counts["steps_from_nearest_kept_step"] += int(row["step"]) != i
        text = step_text(row, counts)
        reasoning[str(i)] = {"task": row["instruction"], **text}
        features["move_primitive"].append(text["move"])
        p = with_point[nearest(point_steps, i)]
        counts["gripper_position_from_another_step"] += int(p["step"]) != i
        features["gripper_position"].append(
            normalize_point(p["gripper_xy"][0], p["gripper_xy"][1], p["image_width"],
                            p["image_height"]))
        features["bboxes"].append(scored_boxes(row))
    return {"reasoning": reasoning, "features": features,
            "metadata": {"episode_id": episode_id, "file_path": file_path, "n_steps": n_steps,
                         "language_instruction": first["instruction"],
                         "caption": first["scene_caption"] or ""}}


def ecot_episode_id(value: Any) -> str:
    """ECoT keys episodes by `str(int(id))`; a non-numeric id is kept as its string."""
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return str(value)


def step_text(row: dict[str, Any], counts: Counter[str]) -> dict[str, str]:
    """The step's text fields; a null one is written "" and counted (never the text "None")."""
    plan = json.loads(row["plan"]) if row["plan"] else None
    values = {"plan": plan_text(plan) if plan else None, "subtask": row["subtask"],
              "subtask_reason": row["subtask_reason"], "move": row["motion"],
              "move_reason": row["move_reason"]}
    for field in TEXT_FIELDS:
        if values[field] is None:
            counts[f"empty_{field}"] += 1
    return {k: v or "" for k, v in values.items()}


def scored_boxes(row: dict[str, Any]) -> list[list[Any]]:
    """`[[score, phrase, [x0, y0, x1, y1]], ...]` from the objects text and its scores."""
    if not row["objects"]:
        return []
    boxes, scores = parse_objects(row["objects"]), row["object_scores"]
    if scores is None or len(scores) != len(boxes):
        raise ExportError(f"{row['dataset']} step {row['step']}: the objects have no detector "
                          f"scores (built by an older armdata); rebuild the reasoning stage")
    return [[round(float(s), 4), phrase, list(box)] for (phrase, box), s in zip(boxes, scores)]
