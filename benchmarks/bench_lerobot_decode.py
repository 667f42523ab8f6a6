"""LeRobot video read benchmark: frames/s of the reader's one-pass decode per episode (seek to the
episode's keyframe, decode forward, pick frames by timestamp) against seeking and decoding each
frame on its own, on a generated LeRobot v3.0 dataset (AV1, all episodes in one mp4 per camera,
the layout that makes per-frame seeks expensive). Also the whole episode reader (Parquet rows +
two cameras).

    python benchmarks/bench_lerobot_decode.py [--episodes 4] [--frames 60] [--size 128]
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


from armdata.pipeline.sources.lerobot import ReadLeRobotEpisode, decode_video, plan_lerobot
from armdata.testing import lerobot_data

KEY = "observation.images.image"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--size", type=int, default=128)
    args = p.parse_args()
    lerobot_data.SIZE = args.size   # the generator's frame size
    with tempfile.TemporaryDirectory() as tmp:
        root = lerobot_data.write_v30(Path(tmp) / "bench", [args.frames] * args.episodes)
        plan = plan_lerobot(str(root), "train", None)
        fps = plan.fps
        videos = [(root / path, offset) for r in plan.episodes
                  for key, path, offset in r.videos if key == KEY]
        total = args.episodes * args.frames
        times = np.arange(args.frames) / fps

        start = time.perf_counter()
        one = [decode_video(str(path), np.array([offset + t]), fps)[0]
               for path, offset in videos for t in times]
        t_one = time.perf_counter() - start

        start = time.perf_counter()
        batched = [f for path, offset in videos for f in decode_video(str(path), offset + times,
                                                                      fps)]
        t_batch = time.perf_counter() - start
        assert all(np.array_equal(a, b) for a, b in zip(one, batched))

        reader = ReadLeRobotEpisode(plan)
        reader.setup()
        start = time.perf_counter()
        n = sum(len(raw["steps"]["frame_index"]) for piece in plan.reads
                for raw in reader.process(piece))
        t_reader = time.perf_counter() - start
    print(f"{args.episodes} episodes x {args.frames} frames, {args.size}x{args.size} AV1")
    print(f"seek + decode per frame:   {total / t_one:8.1f} frames/s")
    print(f"one pass per episode:      {total / t_batch:8.1f} frames/s  (x{t_one / t_batch:.1f})")
    print(f"episode reader, 2 cameras: {n / t_reader:8.1f} steps/s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")


if __name__ == "__main__":
    main()
