"""LeRobot v2.1 layout (lerobot 0.3.x; SPEC §9):

    meta/info.json            codebase_version v2.1, fps, features, path templates, totals
    meta/tasks.jsonl          {"task_index", "task"}
    meta/episodes.jsonl       {"episode_index", "tasks", "length", "armdata_episode_id"}
    meta/episodes_stats.jsonl {"episode_index", "stats": {feature: {min, max, mean, std, count}}}
    DATA_PATH   (data/chunk-000/episode_000000.parquet, ...)   one file per episode, 1000 per chunk
    VIDEO_PATH  (videos/chunk-000/<camera>/episode_000000.mp4)  with video cameras"""
from __future__ import annotations

import os
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from armdata.exports.lerobot import (CHUNKS_SIZE, LeRobotEpisode, video_info, with_hf_metadata,
                                     write_json, write_lines)
from armdata.exports.video import encode_video

VERSION = "v2.1"
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


def write(episodes: Iterator[tuple[LeRobotEpisode, dict[str, Any]]], out: str, fps: float,
          codec: str) -> dict[str, int]:
    tasks: dict[str, int] = {}
    meta, stats_lines, features, frames = [], [], {}, 0
    for ep, features in episodes:
        if not meta:
            video_info(features, fps, codec)
        chunk = ep.episode_index // CHUNKS_SIZE
        path = os.path.join(out, DATA_PATH.format(episode_chunk=chunk,
                                                  episode_index=ep.episode_index))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(with_hf_metadata(pa.table(ep.parquet_columns(features)), features), path)
        for key, decoded in ep.decoded.items():
            if features[key]["dtype"] == "video":
                video = os.path.join(out, VIDEO_PATH.format(
                    episode_chunk=chunk, video_key=key, episode_index=ep.episode_index))
                os.makedirs(os.path.dirname(video), exist_ok=True)
                encode_video(video, decoded, fps, codec)
        tasks.setdefault(ep.task, int(ep.numeric["task_index"][0]))
        meta.append({"episode_index": ep.episode_index, "tasks": [ep.task],
                     "length": ep.length, "armdata_episode_id": ep.episode_id})
        stats_lines.append({"episode_index": ep.episode_index, "stats": ep.stats()})
        frames += ep.length
    if not meta:
        return {}
    videos = [k for k, ft in features.items() if ft["dtype"] == "video"]
    write_json(out, "meta/info.json", {
        "codebase_version": VERSION, "robot_type": None,
        "total_episodes": len(meta), "total_frames": frames, "total_tasks": len(tasks),
        "total_videos": len(videos) * len(meta), "total_chunks": -(-len(meta) // CHUNKS_SIZE),
        "chunks_size": CHUNKS_SIZE, "fps": fps, "splits": {"train": f"0:{len(meta)}"},
        "data_path": DATA_PATH, "video_path": VIDEO_PATH if videos else None,
        "features": features})
    write_lines(out, "meta/tasks.jsonl", [{"task_index": i, "task": t} for t, i in tasks.items()])
    write_lines(out, "meta/episodes.jsonl", meta)
    write_lines(out, "meta/episodes_stats.jsonl", stats_lines)
    return {"episodes": len(meta), "frames": frames, "tasks": len(tasks)}
