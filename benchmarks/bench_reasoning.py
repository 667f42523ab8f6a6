"""Reasoning benchmark: episodes/s of the caption + plan parts batched across episodes against one
episode at a time (same tiny random-weight chat VLM, same run), detector frames/s batched against
one frame at a time, motion labelling steps/s, model calls per episode and peak memory.

The tiny models (tests/tiny_reasoning.py) have random weights: their answers are noise (every plan
falls back after its retry), only the cost and call pattern are meaningful.

    python benchmarks/bench_reasoning.py [--device cpu|cuda] [--episodes 16] [--steps 30]
"""
from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


from armdata.models.device import resolve_device
from armdata.schemas.config import MotionConfig
from armdata.schemas.episode import Episode, Step, encode_jpeg
from armdata.testing.tiny_reasoning import save_tiny_chat_vlm, save_tiny_detector
from armdata.transforms.motion import episode_motions
from armdata.transforms.reasoning import ReasoningStage


def make_episodes(num: int, steps: int, size: int = 64, seed: int = 0) -> list[Episode]:
    """Random-walk states (Bridge units) and noise frames; gripper closes mid-episode."""
    rng = np.random.default_rng(seed)
    out = []
    for e in range(num):
        state = np.cumsum(rng.normal(0, 0.02, (steps, 7)), axis=0).astype(np.float32)
        state[:, 6] = (np.arange(steps) < steps // 2).astype(np.float32)
        frames = [encode_jpeg(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
                  for _ in range(steps)]
        out.append(Episode("bench", f"bench/{e}", steps, [
            Step(index=t, image=frames[t], action=np.r_[state[min(t + 1, steps - 1), :6]
                                                        - state[t, :6], state[t, 6]],
                 state=state[t], instruction="put the cup in the sink", image_width=size,
                 image_height=size) for t in range(steps)]))
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, units: int, unit: str, run: Callable[[], Any],
            device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    cuda = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0
    row = {"name": name, "rate": units / seconds}
    print(f"{name:48s} {row['rate']:10.2f} {unit}/s  peak RSS {peak_rss_mb():7.0f} MB  "
          f"CUDA peak {cuda:7.0f} MB", flush=True)
    return row


def ratio(a: dict[str, Any], b: dict[str, Any]) -> None:
    print(f"  → {a['name']} is {a['rate'] / b['rate']:.2f}x {b['name']}")


def run_stage(stage: ReasoningStage, episodes: list[Episode], batch: int) -> None:
    for start in range(0, len(episodes), batch):
        stage.process_batch(episodes[start:start + batch])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8, help="episodes per batch")
    parser.add_argument("--caption-tokens", type=int, default=32)
    parser.add_argument("--plan-tokens", type=int, default=48)
    parser.add_argument("--motion-episodes", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (0: torch default; 1 is fastest on a busy host)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, "benchmark")

    motion_eps = make_episodes(args.motion_episodes, args.steps, size=8, seed=1)
    cfg = MotionConfig()
    measure("motion labels (SPEC §7 rule)", args.motion_episodes * args.steps, "steps",
            lambda: [episode_motions(e.states(), [s.index for s in e.steps], e.num_steps, cfg)
                     for e in motion_eps], device)

    episodes = make_episodes(args.episodes, args.steps)
    print(f"{args.episodes} episodes x {args.steps} steps, 64x64, device {device}")
    with tempfile.TemporaryDirectory() as tmp:
        vlm = str(save_tiny_chat_vlm(Path(tmp) / "vlm"))
        detector = str(save_tiny_detector(Path(tmp) / "detector"))

        def stage(batch: int, parts: tuple[str, ...], objects_batch: int = 16) -> ReasoningStage:
            s = ReasoningStage(parts=parts, captioner_model=vlm, objects_model=detector,
                               captioner_batch_size=batch, objects_batch_size=objects_batch,
                               captioner_max_new_tokens=args.caption_tokens,
                               planner_max_new_tokens=args.plan_tokens, device=args.device)
            s.setup()
            return s

        parts = ("motion", "caption", "plan")
        one, batched = stage(1, parts), stage(args.batch_size, parts)
        run_stage(one, episodes[:1], 1)                           # warm-up
        one.counters.clear()
        ref = measure("caption + plan, 1 episode at a time", args.episodes, "episodes",
                      lambda: run_stage(one, episodes, 1), device)
        bat = measure(f"caption + plan, {args.batch_size} episodes per batch", args.episodes,
                      "episodes", lambda: run_stage(batched, episodes, args.batch_size), device)
        ratio(bat, ref)
        c = batched.counters
        calls = (c["caption_calls"] + c["plan_calls"]) / args.episodes
        print(f"  generation calls per episode: {calls:.2f} (caption {c['caption_calls']}, "
              f"plan {c['plan_calls'] - c['plan_retries']} + retries {c['plan_retries']}, "
              f"fallbacks {c['plan_fallback']}); batched generate() calls: "
              f"{c['caption_batches'] + c['plan_batches']}")

        det_eps = episodes[:4]
        frames = sum(len(e.steps) for e in det_eps)
        single, many = (stage(1, ("motion", "caption", "objects"), b) for b in (1, 16))
        caption = "a cup on the table, a sink on the left"
        d_ref = measure("detector, 1 frame at a time", frames, "frames",
                        lambda: [single._objects(e, caption) for e in det_eps], device)
        d_bat = measure("detector, 16 frames per batch", frames, "frames",
                        lambda: [many._objects(e, caption) for e in det_eps], device)
        ratio(d_bat, d_ref)
    return 0


if __name__ == "__main__":
    sys.exit(main())
