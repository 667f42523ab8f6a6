"""Output schema v2: one Parquet row per kept step.

The columns up to `is_terminal` are always filled; the ones after it are nullable and filled by the
optional stages (depth, trace, reasoning). Action columns are added at write time, once the
dataset statistics are known (`armdata.transforms.actions.action_columns`).

Image columns are the Hugging Face Image feature: a struct {bytes, path} (path always null here),
declared in the Parquet schema's `huggingface` metadata so that `datasets` and the Hub's viewer
decode them as images (v2; v1 stored plain binary). Readers go through `image_bytes`, which
accepts both forms.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from armdata.schemas.episode import Episode

SCHEMA_VERSION = 2

_i16_list = pa.list_(pa.int16())
# The Hub's Image feature storage type (datasets.Image().pa_type).
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
IMAGE_COLUMNS = ("image", "wrist_image", "depth_png")

SCHEMA = pa.schema([
    ("dataset", pa.string()),
    ("episode_id", pa.string()),
    ("step", pa.int32()),
    ("num_steps", pa.int32()),
    ("instruction", pa.string()),
    ("image", IMAGE),
    ("image_width", pa.int32()),
    ("image_height", pa.int32()),
    ("wrist_image", IMAGE),
    ("state", pa.list_(pa.float32())),
    ("action", pa.list_(pa.float32())),
    ("action_normalized", pa.list_(pa.float32())),
    ("action_bins", _i16_list),
    ("action_tokens", pa.string()),
    ("action_chunk_bins", pa.list_(_i16_list)),
    ("action_chunk", pa.string()),
    ("is_first", pa.bool_()),
    ("is_last", pa.bool_()),
    ("is_terminal", pa.bool_()),
    ("depth_codes", pa.list_(pa.uint8())),
    ("depth_tokens", pa.string()),
    ("depth_png", IMAGE),
    ("gripper_xy", pa.list_(pa.float32())),
    ("gripper_visible", pa.bool_()),
    ("trace", pa.list_(_i16_list)),
    ("trace_text", pa.string()),
    ("arm_traces", pa.string()),      # bimanual only: JSON [{arm, gripper_xy, gripper_visible, trace}]
    ("motion", pa.string()),          # reasoning stage: language motion (SPEC §7)
    ("scene_caption", pa.string()),
    ("objects", pa.string()),
    ("object_scores", pa.list_(pa.float32())),   # the detector's score of each box in `objects`
    ("plan", pa.string()),            # JSON list: the plan steps that remain at this step
    ("subtask", pa.string()),
    ("subtask_reason", pa.string()),
    ("move_reason", pa.string()),
    ("reasoning", pa.string()),
    ("episode_metadata", pa.string()),  # JSON of the source's episode metadata, passed through
], metadata={b"huggingface": json.dumps(
    {"info": {"features": {c: {"_type": "Image"} for c in IMAGE_COLUMNS}}}).encode()})

# Columns computed from the dataset statistics when a shard is written.
ACTION_COLUMNS = ("action_normalized", "action_bins", "action_tokens", "action_chunk_bins",
                  "action_chunk")
# What a spilled episode holds (everything but the action columns).
EPISODE_SCHEMA = pa.schema([f for f in SCHEMA if f.name not in ACTION_COLUMNS])


def image_cell(data: bytes | None) -> dict[str, Any] | None:
    """Encoded image bytes → an IMAGE cell."""
    return None if data is None else {"bytes": data, "path": None}


def image_bytes(cell: Any) -> bytes | None:
    """An image cell as read back (v2 struct {bytes, path} or v1 plain bytes) → encoded bytes."""
    if cell is None or isinstance(cell, (bytes, bytearray)):
        return cell
    if isinstance(cell, dict) and "bytes" in cell:
        return cell["bytes"]
    raise TypeError(f"not an image cell: {type(cell).__name__}")


def depth_text(codes: np.ndarray) -> str:
    """SPEC §2 text form of 100 depth codes."""
    return "<DEPTH_START>" + "".join(f"<DEPTH_{int(c)}>" for c in codes) + "<DEPTH_END>"


def trace_text(trace: list[list[int]]) -> str:
    """`[[x, y], ...]` as MolmoAct's loader expects (str of a list of [x, y])."""
    return "[" + ", ".join(f"[{int(x)}, {int(y)}]" for x, y in trace) + "]"


def arm_traces_of(cell: str | None) -> dict[str, list[list[int]] | None]:
    """An `arm_traces` cell read back: arm name → its trace (None where that arm has none), in
    the order written; {} for a null cell (single-arm builds, or steps the trace stage left
    untouched, e.g. undecodable frames)."""
    return {entry["arm"]: entry["trace"] for entry in json.loads(cell or "[]")}


def episode_table(episode: Episode) -> pa.Table:
    """The episode's rows in EPISODE_SCHEMA (steps kept in source order)."""
    steps = episode.steps
    meta = json.dumps(episode.metadata, sort_keys=True, default=str)
    cols = {
        "dataset": [episode.dataset] * len(steps),
        "episode_id": [episode.episode_id] * len(steps),
        "step": [s.index for s in steps],
        "num_steps": [episode.num_steps] * len(steps),
        "instruction": [s.instruction for s in steps],
        "image": [image_cell(s.image) for s in steps],
        "image_width": [s.image_width for s in steps],
        "image_height": [s.image_height for s in steps],
        "wrist_image": [image_cell(s.wrist_image) for s in steps],
        "state": [np.asarray(s.state, np.float32).tolist() for s in steps],
        "action": [np.asarray(s.action, np.float32).tolist() for s in steps],
        "is_first": [s.is_first for s in steps],
        "is_last": [s.is_last for s in steps],
        "is_terminal": [s.is_terminal for s in steps],
        "depth_codes": [None if s.depth_codes is None else s.depth_codes.tolist() for s in steps],
        "depth_tokens": [None if s.depth_codes is None else depth_text(s.depth_codes) for s in steps],
        "depth_png": [image_cell(s.depth_png) for s in steps],
        "gripper_xy": [None if s.gripper_xy is None else [float(v) for v in s.gripper_xy]
                       for s in steps],
        "gripper_visible": [s.gripper_visible for s in steps],
        "trace": [s.trace for s in steps],
        "trace_text": [None if s.trace is None else trace_text(s.trace) for s in steps],
        "arm_traces": [None if s.arm_traces is None else json.dumps(s.arm_traces, sort_keys=True)
                       for s in steps],
        "motion": [s.motion for s in steps],
        "scene_caption": [s.scene_caption for s in steps],
        "objects": [s.objects for s in steps],
        "object_scores": [s.object_scores for s in steps],
        "plan": [None if s.plan is None else json.dumps(s.plan) for s in steps],
        "subtask": [s.subtask for s in steps],
        "subtask_reason": [s.subtask_reason for s in steps],
        "move_reason": [s.move_reason for s in steps],
        "reasoning": [s.reasoning for s in steps],
        "episode_metadata": [meta] * len(steps),
    }
    return pa.table(cols, schema=EPISODE_SCHEMA)
