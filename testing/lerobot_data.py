"""Writes small LeRobot datasets (v2.1 and v3.0) for the tests, with mp4 video encoded by PyAV.

Frame t of every episode is a flat gray of level `frame_level(episode, t)` (the main camera) and
its negative (the wrist camera), so a test can tell from the decoded pixels which frame it got.
Actions are 7-d with the LIBERO gripper convention (-1 open, +1 closed)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from armdata.exports.video import encode_video
from armdata.schemas.episode import encode_png
from armdata.schemas.output import IMAGE

FPS = 10
SIZE = 64
TASKS = ["put the bowl on the plate", "open the drawer"]


def frame_level(episode: int, t: int) -> int:
    return (30 + 40 * episode + 12 * t) % 256


def frame(level: int) -> np.ndarray:
    return np.full((SIZE, SIZE, 3), level, np.uint8)


def episode_arrays(episode: int, length: int) -> dict[str, np.ndarray]:
    t = np.arange(length)
    action = np.zeros((length, 7), np.float32)
    action[:, 0] = 0.01 * (episode + 1) * (t + 1)
    action[:, 6] = np.where(t < length // 2, -1.0, 1.0)
    state = np.stack([0.1 * t + episode] * 8, axis=1).astype(np.float32)
    return {"action": action, "observation.state": state}


def write_video(path: Path, frames: list[np.ndarray], codec: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_video(str(path), frames, FPS, {"libsvtav1": "av1"}.get(codec, codec))


def frames_table(episode: int, length: int, start_index: int, task_index: int,
                 wrist_png: bool) -> pa.Table:
    arrays = episode_arrays(episode, length)
    t = np.arange(length)
    columns = {
        "action": pa.array(list(arrays["action"]), pa.list_(pa.float32())),
        "observation.state": pa.array(list(arrays["observation.state"]), pa.list_(pa.float32())),
        "timestamp": pa.array((t / FPS).astype(np.float32)),
        "frame_index": pa.array(t.astype(np.int64)),
        "episode_index": pa.array(np.full(length, episode, np.int64)),
        "index": pa.array(np.arange(start_index, start_index + length, dtype=np.int64)),
        "task_index": pa.array(np.full(length, task_index, np.int64)),
    }
    if wrist_png:
        columns["observation.images.wrist_image"] = pa.array(
            [{"bytes": encode_png(frame(255 - frame_level(episode, i))), "path": None}
             for i in t], IMAGE)
    return pa.table(columns)


def features(wrist_dtype: str) -> dict:
    image = {"shape": [SIZE, SIZE, 3], "names": ["height", "width", "channels"]}
    return {
        "observation.images.image": {"dtype": "video", **image},
        "observation.images.wrist_image": {"dtype": wrist_dtype, **image},
        "observation.state": {"dtype": "float32", "shape": [8], "names": None},
        "action": {"dtype": "float32", "shape": [7], "names": None},
        **{k: {"dtype": "int64", "shape": [1], "names": None}
           for k in ("frame_index", "episode_index", "index", "task_index")},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    }


def write_v21(root: Path, lengths: list[int], codec: str = "h264") -> Path:
    """One Parquet per episode (wrist frames as PNG in it), the main camera as one mp4 each."""
    info = {"codebase_version": "v2.1", "robot_type": "panda", "fps": FPS,
            "total_episodes": len(lengths), "total_frames": sum(lengths), "total_tasks": 2,
            "chunks_size": 1000, "splits": {"train": f"0:{len(lengths)}"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/"
                          "episode_{episode_index:06d}.mp4",
            "features": features("image")}
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    (root / "meta" / "tasks.jsonl").write_text(
        "".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(TASKS)))
    episodes, index = [], 0
    for e, n in enumerate(lengths):
        path = root / info["data_path"].format(episode_chunk=0, episode_index=e)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(frames_table(e, n, index, e % 2, wrist_png=True), path)
        write_video(root / info["video_path"].format(
            episode_chunk=0, video_key="observation.images.image", episode_index=e),
            [frame(frame_level(e, t)) for t in range(n)], codec)
        episodes.append({"episode_index": e, "tasks": [TASKS[e % 2]], "length": n})
        index += n
    (root / "meta" / "episodes.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in episodes))
    return root


def write_v30(root: Path, lengths: list[int], codec: str = "libsvtav1") -> Path:
    """All episodes in one Parquet and, per camera, one AV1 mp4; episode offsets in
    meta/episodes, tasks in meta/tasks.parquet (task strings as the pandas index)."""
    info = {"codebase_version": "v3.0", "robot_type": "panda", "fps": FPS,
            "total_episodes": len(lengths), "total_frames": sum(lengths), "total_tasks": 2,
            "chunks_size": 1000, "splits": {"train": f"0:{len(lengths)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": features("video")}
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    pd.DataFrame({"task_index": range(len(TASKS))}, index=TASKS).to_parquet(
        root / "meta" / "tasks.parquet")
    tables, episodes, top, wrist, index = [], [], [], [], 0
    for e, n in enumerate(lengths):
        tables.append(frames_table(e, n, index, e % 2, wrist_png=False))
        row = {"episode_index": e, "tasks": [TASKS[e % 2]], "length": n,
               "data/chunk_index": 0, "data/file_index": 0,
               "dataset_from_index": index, "dataset_to_index": index + n}
        for key in ("observation.images.image", "observation.images.wrist_image"):
            row.update({f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": 0,
                        f"videos/{key}/from_timestamp": len(top) / FPS,
                        f"videos/{key}/to_timestamp": (len(top) + n) / FPS})
        episodes.append(row)
        top += [frame(frame_level(e, t)) for t in range(n)]
        wrist += [frame(255 - frame_level(e, t)) for t in range(n)]
        index += n
    data = root / info["data_path"].format(chunk_index=0, file_index=0)
    data.parent.mkdir(parents=True)
    # shuffled rows and small row groups: the reader must filter and order by itself
    table = pa.concat_tables(tables)
    table = table.take(np.random.default_rng(0).permutation(table.num_rows))
    pq.write_table(table, data, row_group_size=4)
    for key, frames in (("observation.images.image", top),
                        ("observation.images.wrist_image", wrist)):
        write_video(root / info["video_path"].format(video_key=key, chunk_index=0, file_index=0),
                    frames, codec)
    pq.write_table(pa.Table.from_pylist(episodes),
                   root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    return root
