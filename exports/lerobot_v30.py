"""LeRobot v3.0 layout (lerobot ≥ 0.4, which refuses v2.1; SPEC §9): episodes share files.

    meta/info.json     codebase_version v3.0, fps, features, path templates, file sizes, totals
    meta/tasks.parquet task strings (the index) → task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode: length, tasks, where its
                       frames and video segments are, stats/<feature>/<stat>
    meta/stats.json    the dataset's stats (aggregated from the episodes')
    DATA_PATH          (data/chunk-000/file-000.parquet, ...) frames of consecutive episodes
    VIDEO_PATH         (videos/<camera>/chunk-000/file-000.mp4) with video cameras, the same episodes

A new data file (and video file) starts at an episode boundary once the current one holds
DATA_FILE_MB of frame data; 1000 files per chunk."""
from __future__ import annotations

import os
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from armdata.exports.lerobot import (CHUNKS_SIZE, LeRobotEpisode, aggregate_stats, video_info,
                                     with_hf_metadata, write_json)
from armdata.exports.video import VideoWriter

VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
DATA_FILE_MB, VIDEO_FILE_MB = 100, 500


class FileSet:
    """The data file and the video files being written, rolled over together."""

    def __init__(self, out: str, features: dict[str, Any], fps: float, codec: str) -> None:
        self.out, self.features, self.fps, self.codec = out, features, fps, codec
        self.number, self.data, self.videos, self.bytes = -1, None, {}, 0

    @property
    def where(self) -> dict[str, int]:
        return {"chunk_index": self.number // CHUNKS_SIZE, "file_index": self.number % CHUNKS_SIZE}

    def path(self, template: str, **keys: str) -> str:
        path = os.path.join(self.out, template.format(**self.where, **keys))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def add(self, ep: LeRobotEpisode) -> dict[str, Any]:
        """Append the episode; returns where its frames went (episode metadata columns)."""
        if self.data is None or self.bytes >= DATA_FILE_MB * 1e6:
            self.close()
            self.number += 1
            self.bytes = 0
        table = with_hf_metadata(pa.table(ep.parquet_columns(self.features)), self.features)
        if self.data is None:
            self.data = pq.ParquetWriter(self.path(DATA_PATH), table.schema)
        self.data.write_table(table)
        self.bytes += table.nbytes
        where = {f"data/{k}": v for k, v in self.where.items()}
        for key, decoded in ep.decoded.items():
            if self.features[key]["dtype"] != "video":
                continue
            if key not in self.videos:
                height, width = self.features[key]["shape"][:2]
                self.videos[key] = VideoWriter(self.path(VIDEO_PATH, video_key=key), self.fps,
                                               self.codec, width, height)
            writer = self.videos[key]
            where.update({f"videos/{key}/{k}": v for k, v in self.where.items()})
            where[f"videos/{key}/from_timestamp"] = writer.frames / self.fps
            writer.add(decoded)
            where[f"videos/{key}/to_timestamp"] = writer.frames / self.fps
        return where

    def close(self) -> None:
        if self.data is not None:
            self.data.close()
        for writer in self.videos.values():
            writer.close()
        self.data, self.videos = None, {}


def write(episodes: Iterator[tuple[LeRobotEpisode, dict[str, Any]]], out: str, fps: float,
          codec: str) -> dict[str, int]:
    tasks: dict[str, int] = {}
    rows, stats, files, features, frames = [], [], None, {}, 0
    try:
        for ep, features in episodes:
            if files is None:
                video_info(features, fps, codec)
                files = FileSet(out, features, fps, codec)
            row = {"episode_index": ep.episode_index, "tasks": [ep.task], "length": ep.length,
                   **files.add(ep), "dataset_from_index": frames,
                   "dataset_to_index": frames + ep.length,
                   "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                   "armdata_episode_id": ep.episode_id}
            ep_stats = ep.stats()
            row.update({f"stats/{k}/{s}": v for k, values in ep_stats.items()
                        for s, v in values.items()})
            rows.append(row)
            stats.append(ep_stats)
            tasks.setdefault(ep.task, int(ep.numeric["task_index"][0]))
            frames += ep.length
    finally:
        if files is not None:
            files.close()
    if not rows:
        return {}
    os.makedirs(os.path.join(out, os.path.dirname(EPISODES_PATH)), exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), os.path.join(out, EPISODES_PATH))
    import pandas as pd   # the `export` extra; LeRobot reads the task strings as a pandas index

    pd.DataFrame({"task_index": list(tasks.values())}, index=list(tasks)).to_parquet(
        os.path.join(out, "meta", "tasks.parquet"))
    write_json(out, "meta/stats.json", aggregate_stats(stats))
    videos = any(ft["dtype"] == "video" for ft in features.values())
    write_json(out, "meta/info.json", {
        "codebase_version": VERSION, "robot_type": None,
        "total_episodes": len(rows), "total_frames": frames, "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILE_MB,
        "video_files_size_in_mb": VIDEO_FILE_MB, "fps": fps,
        "splits": {"train": f"0:{len(rows)}"}, "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if videos else None, "features": features})
    return {"episodes": len(rows), "frames": frames, "tasks": len(tasks)}
