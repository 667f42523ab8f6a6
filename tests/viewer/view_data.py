"""A generated built dataset for the viewer's tests and benchmark: every column the viewer shows
(frames, trace, gripper, objects, plan, reasoning, depth codes, actions), a manifest with counters
and stage options, statistics and dead letters. Written directly (no build), so 1,000 episodes take
seconds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from armdata.schemas.episode import encode_jpeg
from armdata.schemas.output import SCHEMA, image_cell
from armdata.schemas.columns import plan_text
from armdata.transforms.plan import compose_reasoning

NAME = "view_test"
H, W = 96, 128
PLAN = ["reach the cup", "grasp the cup", "lift the cup"]
MOTIONS = ["move left", "move down", "close gripper", "move up"]


def frame(step: int) -> bytes:
    """A textured blue-grey frame (never blank, never magenta), different per step."""
    y, x = np.mgrid[0:H, 0:W]
    rgb = np.stack([40 + (x + 3 * step) % 60, 80 + y % 50, 150 + (x * y) % 80], -1)
    return encode_jpeg(rgb.astype(np.uint8))


def trace_of(step: int, steps: int) -> list[list[int]]:
    return [[40 + 10 * k + step, 60 + 12 * k] for k in range(max(2, steps - step))][:6]


def episode_rows(episode: int, steps: int, frames: list[bytes]) -> list[dict]:
    rng = np.random.default_rng(episode)
    rows = []
    for s in range(steps):
        k = min(len(PLAN) - 1, s * len(PLAN) // steps)
        action = rng.normal(0, [0.02] * 6 + [0.5]).astype(np.float32)
        gxy = [W * (40 + s) / 256, H * 60 / 256]
        fields = {"TASK": "put the cup on the plate", "PLAN": plan_text(PLAN[k:]),
                  "VISIBLE OBJECTS": "cup [10, 20, 40, 50]",
                  "SUBTASK REASONING": f"step {s} needs the cup", "SUBTASK": PLAN[k],
                  "MOVE REASONING": f"because of step {s}", "MOVE": MOTIONS[s % len(MOTIONS)],
                  "GRIPPER POSITION": f"[{40 + s}, 60]"}
        trace = trace_of(s, steps)
        rows.append({
            "dataset": NAME, "episode_id": f"{NAME}/train/{episode}", "step": s,
            "num_steps": steps + (episode == 0), "instruction": "put the cup on the plate",
            "image": image_cell(frames[s % len(frames)]), "image_width": W, "image_height": H,
            "wrist_image": image_cell(frames[(s + 1) % len(frames)]) if episode == 0 else None,
            "state": [0.0] * 7, "action": action.tolist(),
            "action_normalized": np.clip(action / 0.05, -1, 1).tolist(),
            "action_bins": [128] * 7, "action_tokens": "[a]", "action_chunk_bins": [[128] * 7],
            "action_chunk": "[[a]]", "is_first": s == 0, "is_last": s == steps - 1,
            "is_terminal": s == steps - 1,
            "depth_codes": [(s * 7 + i) % 128 for i in range(100)], "depth_tokens": "<DEPTH_START>",
            "gripper_xy": gxy, "gripper_visible": s % 3 != 2, "trace": trace,
            "trace_text": json.dumps(trace), "motion": fields["MOVE"],
            "scene_caption": "a cup and a plate", "objects": fields["VISIBLE OBJECTS"],
            "plan": json.dumps(PLAN[k:]), "subtask": fields["SUBTASK"],
            "subtask_reason": fields["SUBTASK REASONING"], "move_reason": fields["MOVE REASONING"],
            "reasoning": compose_reasoning(fields), "episode_metadata": "{}"})
    return rows


def write_view_dataset(root: Path, episodes: int = 3, steps: int = 8) -> Path:
    """A built dataset at `root`: `episodes` kept episodes of `steps` steps, one more rejected
    whole, and one rejected step in episode 0. Returns root."""
    (root / "data").mkdir(parents=True)
    (root / "rejected").mkdir()
    frames = [frame(s) for s in range(min(steps, 8))]
    rows = [r for e in range(episodes) for r in episode_rows(e, steps, frames)]
    shard = "data/train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows, SCHEMA), root / shard, row_group_size=2048)
    rejections = [{"dataset": NAME, "episode_id": f"{NAME}/train/0", "step": steps,
                   "stage": "trace", "reason": "frame undecodable", "steps": 1},
                  {"dataset": NAME, "episode_id": f"{NAME}/train/{episodes}", "step": None,
                   "stage": "validate", "reason": "no instruction", "steps": steps}]
    (root / "rejected" / "rejected.jsonl").write_text(
        "".join(json.dumps(r, sort_keys=True) + "\n" for r in rejections))
    stats = {"action": {"q01": [-0.04] * 6 + [-0.9], "q99": [0.04] * 6 + [0.9],
                        "mask": [True] * 6 + [False]}}
    (root / "dataset_statistics.json").write_text(json.dumps({NAME: stats}))
    manifest = {
        "config": {"name": NAME},
        "counts": {"episodes_in": episodes + 1, "episodes_out": episodes, "episodes_rejected": 1,
                   "steps_in": episodes * steps + steps + 1, "steps_out": episodes * steps,
                   "steps_rejected": steps + 1},
        "stages": ["actions", "depth", "trace", "reasoning"],
        "stage_options": {"trace": {"localizer": "projection", "tracker": "affine"},
                          "depth": {"vqvae": {"path": str(root / "missing-vqvae.pt")}}},
        "counters": {"trace/frames": episodes * steps, "trace/localizer_calls": episodes,
                     "reasoning/episodes": episodes, "reasoning/plan_fallback": 1,
                     "reasoning/caption_calls": episodes},
        "rejected": {"path": "rejected/rejected.jsonl", "by_stage": {}},
        "statistics": "dataset_statistics.json", "num_shards": 1,
        "shards": [{"path": shard, "rows": len(rows), "episodes": episodes, "sha256": "",
                    "bytes": (root / shard).stat().st_size}]}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root
