"""Tracker benchmark: the default `affine` tracker against `lk`, side by side in one run.

1. Hard generated videos (tests/synthetic_video.py `make_hard_video`: the gripper turns ±25°,
   scales ±15 %, opens and closes its fingers, the light drifts, sensor noise, JPEG q80, an opaque
   bar covers it for ~4 frames), 60 frames at 256 px, seeds the tests never use. Each video is
   written as PNG frames and tracked by `armdata track DIR --point X,Y --json` from the true
   point on frame 0. Reported: the share of truly visible frames reported visible within 4 px,
   mean/max error on the truly visible frames reported visible, the share of covered frames
   reported hidden, and frames/s of the tracking alone (one point, frames already decoded).
2. With `--build`: the demo data (`pipeline/synthetic.py`, as `armdata demo` writes it) built
   with `--stages actions,trace --localizer projection --tracker T` (affine also with
   `--no-state-guide`): localizer calls as a share of frames (manifest counters
   `trace/localizer_calls` / `trace/frames`), the error of the written `gripper_xy` against the
   ground truth on truly visible steps, the share of steps reported visible, and the written
   traces (0..255) against those the ground truth gives by the same rule (`trace_scores`).

    python benchmarks/bench_tracker.py [--seeds 1000-1007] [--build] [--episodes 8] [--size 128]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil


from armdata.models.trackers.factory import make_tracker
from armdata.testing.synthetic_video import make_hard_video, write_frames
from armdata.transforms.trace import tracking_scores

TRACKERS = ("affine", "lk")


def track_cli(frames_dir: Path, point: np.ndarray, tracker: str) -> tuple[np.ndarray, np.ndarray]:
    """`armdata track DIR --point X,Y --tracker T --json`, in-process."""
    from armdata.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["track", str(frames_dir), "--point", f"{point[0]},{point[1]}",
                     "--tracker", tracker, "--json"])
    if code != 0:
        raise RuntimeError(f"armdata track failed with exit code {code}")
    result = json.loads(out.getvalue())
    return np.array(result["tracks"], float), np.array(result["visible"], bool)


def bench_videos(seeds: list[int], frames: int) -> None:
    print(f"hard videos: {len(seeds)} seeds ({seeds[0]}..{seeds[-1]}) x {frames} frames, 256x256")
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in TRACKERS}
    seconds = {name: 0.0 for name in TRACKERS}
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            video = make_hard_video(seed, num_frames=frames)
            directory = write_frames(video, Path(tmp) / f"v{seed}")
            total += len(video.frames)
            for name in TRACKERS:
                xy, visible = track_cli(directory, video.xy[0], name)
                rows[name].append(tracking_scores(xy, visible, video.xy, video.visible))
                start = time.perf_counter()   # tracking alone, on the decoded frames
                make_tracker(name).track(video.frames, 0, tuple(video.xy[0]))
                seconds[name] += time.perf_counter() - start
    for name in TRACKERS:
        per_seed = " ".join(f"{r['within']:.2f}" for r in rows[name])
        mean = {k: float(np.mean([r[k] for r in rows[name]])) for k in rows[name][0]}
        worst = max(r["max_px"] for r in rows[name])
        print(f"  {name:7s} visible within 4 px {mean['within']:6.1%} (per seed {per_seed}); "
              f"covered reported hidden {mean['hidden']:6.1%}; error {mean['mean_px']:.2f} px "
              f"mean, {worst:.2f} px max; {total / seconds[name]:6.0f} frames/s")
    print(f"  -> affine tracks {seconds['lk'] / seconds['affine']:.2f}x as fast as lk; "
          f"peak RSS {psutil.Process().memory_info().rss / 2**20:.0f} MB")


def bench_build(episodes: int, steps: int, size: int) -> None:
    from armdata.cli import main
    from armdata.commands.demo import SEED, trace_report
    from armdata.testing.synthetic import write_synthetic_rlds

    print(f"demo data: {episodes} episodes x {steps} steps, {size}x{size}, "
          f"--localizer projection")
    with tempfile.TemporaryDirectory() as tmp:
        source = write_synthetic_rlds(Path(tmp) / "source", num_episodes=episodes,
                                      num_steps=steps, image_size=(size, size), seed=SEED)
        runs = {"affine": ["--tracker", "affine"],
                "affine, no state guide": ["--tracker", "affine", "--no-state-guide"],
                "lk": ["--tracker", "lk"], "lk, no state guide": ["--tracker", "lk",
                                                                 "--no-state-guide"]}
        for i, (name, flags) in enumerate(runs.items()):
            output = Path(tmp) / f"run{i}"
            start = time.perf_counter()
            code = main(["build", "--config", "armdata_demo", "--source", str(source),
                         "--output", str(output), "--stages", "actions,trace",
                         "--localizer", "projection", *flags,
                         "--direct_running_mode=in_memory", "--direct_num_workers=1"])
            if code != 0:
                raise RuntimeError(f"build with --tracker {name} failed ({code})")
            seconds = time.perf_counter() - start
            counters = json.loads((output / "manifest.json").read_text())["counters"]
            calls = counters.get("trace/localizer_calls", 0)
            frames = counters["trace/frames"]
            err = trace_report(output, steps, size)
            print(f"  {name:22s} localizer asked on {calls}/{frames} frames "
                  f"({calls / frames:.1%}); gripper_xy error on visible steps "
                  f"{err['mean_px']:.3f} px mean, {err['max_px']:.2f} px max; reported visible "
                  f"{err['reported_visible']:.1%}; traces: {err['trace_identical']:.1%} "
                  f"identical, {err['trace_same_length']:.1%} as long, points off by "
                  f"{err['trace_mean_units']:.2f} (0..255) on those; build {seconds:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="1000-1007", help="first-last seed of the videos")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--build", action="store_true", help="also build the demo data")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    first, last = (int(v) for v in args.seeds.split("-"))
    bench_videos(list(range(first, last + 1)), args.frames)
    if args.build:
        bench_build(args.episodes, args.steps, args.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
