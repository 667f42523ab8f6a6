"""LeRobot v2.1 layout with images in the Parquet (what MolmoAct's preprocessing reads):

    meta/info.json            codebase_version v2.1, fps, features, path templates, totals
    meta/tasks.jsonl          {"task_index", "task"}
    meta/episodes.jsonl       {"episode_index", "tasks", "length"}
    meta/episodes_stats.jsonl {"episode_index", "stats": {feature: {min, max, mean, std, count}}}
    data/chunk-XXX/episode_XXXXXX.parquet   one file per episode, 1000 episodes per chunk

Frames keep their encoded bytes as the Hub Image struct (`observation.images.image`,
`observation.images.wrist_image` when the build has wrist frames); `action` is the canonical 7-d
action and `observation.state` the state. The frame rate is the source's where the build came
from a LeRobot source, else DEFAULT_FPS (RLDS stores none)."""
from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from armdata.exports.rows import ExportError, iter_episodes, require_empty
from armdata.pipeline.sinks.manifest import load_manifest
from armdata.schemas.output import IMAGE, image_bytes, image_cell

log = logging.getLogger(__name__)

VERSION = "v2.1"
CHUNKS_SIZE = 1000
DEFAULT_FPS = 10
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
COLUMNS = ["step", "instruction", "image", "wrist_image", "image_width", "image_height", "state",
           "action"]
IMAGE_KEYS = {"image": "observation.images.image", "wrist_image": "observation.images.wrist_image"}


def numeric_stats(values: np.ndarray) -> dict[str, list]:
    """LeRobot's per-episode stats of a (T, D) feature."""
    values = np.asarray(values, np.float64).reshape(len(values), -1)
    return {"min": values.min(0).tolist(), "max": values.max(0).tolist(),
            "mean": values.mean(0).tolist(), "std": values.std(0).tolist(),
            "count": [len(values)]}


def vector_feature(dim: int) -> dict[str, Any]:
    return {"dtype": "float32", "shape": [dim], "names": None}


def scalar_feature(dtype: str) -> dict[str, Any]:
    return {"dtype": dtype, "shape": [1], "names": None}


def export_lerobot(dataset_dir: str, out: str) -> dict[str, Any]:
    manifest = load_manifest(dataset_dir)
    require_empty(out)
    fps = manifest["source"].get("fps") or DEFAULT_FPS
    tasks: dict[str, int] = {}
    features: dict[str, Any] | None = None
    episodes, stats_lines, index = [], [], 0
    os.makedirs(os.path.join(out, "meta"), exist_ok=True)
    for episode_index, rows in enumerate(iter_episodes(dataset_dir, COLUMNS)):
        if features is None:
            features = episode_features(rows[0])
        cameras = [k for k in IMAGE_KEYS if IMAGE_KEYS[k] in features]
        for row in rows:
            size = [row["image_height"], row["image_width"], 3]
            if size != features[IMAGE_KEYS["image"]]["shape"]:
                raise ExportError(f"{row['episode_id']} step {row['step']}: frame size {size} "
                                  f"differs from the first frame's; LeRobot needs one size")
            for k in cameras:
                if image_bytes(row[k]) is None:
                    raise ExportError(f"{row['episode_id']} step {row['step']}: no {k}, but "
                                      f"the dataset's first frame has one")
        task = rows[0]["instruction"]
        task_index = tasks.setdefault(task, len(tasks))
        n = len(rows)
        state = np.asarray([r["state"] for r in rows], np.float32).reshape(n, -1)
        action = np.asarray([r["action"] for r in rows], np.float32)
        frame_index = np.arange(n, dtype=np.int64)
        timestamp = (frame_index / fps).astype(np.float32)
        columns = {IMAGE_KEYS[k]: pa.array([image_cell(image_bytes(r[k])) for r in rows], IMAGE)
                   for k in cameras}
        columns.update({
            "observation.state": pa.array(list(state), pa.list_(pa.float32())),
            "action": pa.array(list(action), pa.list_(pa.float32())),
            "timestamp": pa.array(timestamp), "frame_index": pa.array(frame_index),
            "episode_index": pa.array(np.full(n, episode_index, np.int64)),
            "index": pa.array(np.arange(index, index + n, dtype=np.int64)),
            "task_index": pa.array(np.full(n, task_index, np.int64)),
        })
        path = os.path.join(out, DATA_PATH.format(episode_chunk=episode_index // CHUNKS_SIZE,
                                                  episode_index=episode_index))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(pa.table(columns), path)
        episodes.append({"episode_index": episode_index, "tasks": [task], "length": n,
                         "armdata_episode_id": rows[0]["episode_id"]})
        stats_lines.append({"episode_index": episode_index, "stats": {
            "observation.state": numeric_stats(state), "action": numeric_stats(action),
            "timestamp": numeric_stats(timestamp), "frame_index": numeric_stats(frame_index),
            "episode_index": numeric_stats(np.full(n, episode_index)),
            "index": numeric_stats(np.arange(index, index + n)),
            "task_index": numeric_stats(np.full(n, task_index))}})
        index += n
    if features is None:
        raise ExportError(f"{dataset_dir} has no rows to export")
    info = {
        "codebase_version": VERSION, "robot_type": None,
        "total_episodes": len(episodes), "total_frames": index, "total_tasks": len(tasks),
        "total_videos": 0, "total_chunks": -(-len(episodes) // CHUNKS_SIZE),
        "chunks_size": CHUNKS_SIZE, "fps": fps, "splits": {"train": f"0:{len(episodes)}"},
        "data_path": DATA_PATH, "video_path": None, "features": features,
    }
    write_json(out, "meta/info.json", info)
    write_lines(out, "meta/tasks.jsonl",
                [{"task_index": i, "task": t} for t, i in tasks.items()])
    write_lines(out, "meta/episodes.jsonl", episodes)
    write_lines(out, "meta/episodes_stats.jsonl", stats_lines)
    return {"format": "lerobot", "version": VERSION, "out": out, "episodes": len(episodes),
            "frames": index, "tasks": len(tasks), "fps": fps}


def episode_features(row: dict[str, Any]) -> dict[str, Any]:
    shape = [row["image_height"], row["image_width"], 3]
    features = {IMAGE_KEYS[k]: {"dtype": "image", "shape": shape,
                                "names": ["height", "width", "channel"]}
                for k in IMAGE_KEYS if image_bytes(row[k]) is not None}
    features["observation.state"] = vector_feature(len(row["state"]))
    features["action"] = vector_feature(len(row["action"]))
    features.update({"timestamp": scalar_feature("float32"),
                     **{k: scalar_feature("int64") for k in
                        ("frame_index", "episode_index", "index", "task_index")}})
    return features


def write_json(out: str, rel: str, value: Any) -> None:
    with open(os.path.join(out, rel), "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def write_lines(out: str, rel: str, values: list[dict[str, Any]]) -> None:
    with open(os.path.join(out, rel), "w") as f:
        f.writelines(json.dumps(v) + "\n" for v in values)
