"""Trace benchmark: traced steps/s of localize-once-then-track against localizing every frame.

On generated 256×256 videos with known motion (tests/synthetic_video.py: fast moves, an occlusion)
turned into episodes whose state projects exactly onto the ground truth:
- projection localizer: every frame (`--tracker none`) vs `affine` (the default), `lk` (and
  `cotracker3` where it loads);
- pointing localizer with a tiny random-weight transformers VLM (cost-realistic call pattern, its
  answers are noise): every frame one at a time (the reference), every frame batched, and the
  tracked path (one pointing batch for the seed + `lk`).
Accuracy is the mean pixel error against the ground truth on ground-truth-visible frames.

    python benchmarks/bench_trace.py [--device cpu|cuda] [--videos 4] [--frames 60]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any, Callable

import numpy as np
import psutil
import torch


from armdata.models.device import resolve_device
from armdata.models.localizers import Clip, PointingLocalizer, ProjectionLocalizer
from armdata.models.trackers import AffineTracker, LKTracker, cotracker_from_hub
from armdata.schemas.config import ArmConfig, CameraConfig
from armdata.schemas.episode import decode_rgb
from armdata.testing.synthetic_video import make_video, video_episode
from armdata.transforms.trace import localize_and_track, trace_error

CAMERA = CameraConfig("episode_metadata/camera_intrinsics", "episode_metadata/camera_extrinsics")
ARM = ArmConfig()


def clips(num: int, frames: int) -> list[tuple[Clip, Any]]:
    out = []
    for seed in range(num):
        video = make_video(1000 + seed, num_frames=frames)
        episode, _, _ = video_episode(video, f"bench-{seed}")
        clip = Clip(episode.episode_id, np.stack([decode_rgb(s.image) for s in episode.steps]),
                    episode.states(), [s.index for s in episode.steps], episode.metadata)
        out.append((clip, video))
    return out


def measure(name: str, data: list[tuple[Clip, Any]], run: Callable[[Clip], Any],
            device: torch.device, accuracy: bool = True) -> dict[str, Any]:
    """Time `run` over all clips; its (xy, visible) is scored unless `accuracy` is off."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    errors, steps = [], 0
    start = time.perf_counter()
    for clip, video in data:
        result = run(clip)
        steps += len(clip.frames)
        if accuracy and result is not None:
            xy, _ = result
            errors.append(trace_error(xy, video.xy, video.visible)["mean_px"])
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    row = {"name": name, "steps_per_s": steps / seconds,
           "mean_px": float(np.mean(errors)) if errors else float("nan"),
           "rss_mb": psutil.Process().memory_info().rss / 2**20,
           "cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0}
    err = "   n/a" if np.isnan(row["mean_px"]) else f"{row['mean_px']:6.2f}"
    print(f"{name:44s} {row['steps_per_s']:9.1f} steps/s  err {err} px  "
          f"RSS {row['rss_mb']:7.0f} MB  CUDA peak {row['cuda_mb']:7.0f} MB", flush=True)
    return row


def ratio(a: dict[str, Any], b: dict[str, Any]) -> None:
    print(f"  → {a['name']} is {a['steps_per_s'] / b['steps_per_s']:.2f}x {b['name']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--pointing-batch-size", type=int, default=8)
    parser.add_argument("--cotracker-repo", help="local clone of facebookresearch/co-tracker")
    parser.add_argument("--trust-cotracker-code", action="store_true",
                        help="without --cotracker-repo: let torch.hub run co-tracker's GitHub code")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, "benchmark")
    data = clips(args.videos, args.frames)
    print(f"{args.videos} videos x {args.frames} frames, 256x256, device {device}")

    projection, lk = ProjectionLocalizer(CAMERA), LKTracker()
    every = measure("projection, every frame", data,
                    lambda c: localize_and_track(projection, None, c, ARM), device)
    affine = measure("projection + affine", data,
                     lambda c: localize_and_track(projection, AffineTracker(), c, ARM), device)
    ratio(affine, every)
    tracked = measure("projection + lk", data,
                      lambda c: localize_and_track(projection, lk, c, ARM), device)
    ratio(tracked, every)
    try:
        cotracker = cotracker_from_hub(args.cotracker_repo, device,
                                       trust_code=args.trust_cotracker_code)
        co = measure("projection + cotracker3", data,
                     lambda c: localize_and_track(projection, cotracker, c, ARM), device)
        ratio(co, every)
    except (RuntimeError, ValueError) as exc:   # not loadable, or GitHub code not trusted
        print(f"cotracker3 not measured: {str(exc).splitlines()[0][:160]}")

    from armdata.testing.tiny_vlm import tiny_vlm
    model, processor = tiny_vlm("words", hidden=32)
    model = model.to(device)
    one = PointingLocalizer(model, processor, batch_size=1)
    batched = PointingLocalizer(model, processor, batch_size=args.pointing_batch_size)
    # random weights: the answers are noise, only the cost is meaningful
    ref = measure("tiny VLM pointing, every frame, 1 at a time", data,
                  lambda c: one.locate(c, ARM, range(len(c.frames))), device, accuracy=False)
    bat = measure(f"tiny VLM pointing, every frame, batch {args.pointing_batch_size}", data,
                  lambda c: batched.locate(c, ARM, range(len(c.frames))), device,
                  accuracy=False)
    ratio(bat, ref)

    def seed_then_track(clip: Clip) -> Any:
        # what the tracked path costs once the pointer finds the gripper in its first batch:
        # one batch of pointing, then lk from the (here: projected) seed
        batched.locate(clip, ARM, range(min(len(clip.frames), args.pointing_batch_size)))
        return localize_and_track(projection, lk, clip, ARM)

    trk = measure("tiny VLM pointing seed batch + lk", data, seed_then_track, device)
    ratio(trk, ref)
    return 0


if __name__ == "__main__":
    sys.exit(main())
