"""Throughput and peak memory of `armdata build --stages actions`.

Runs the real command in a subprocess on (a) the Bridge sample in ../shared and (b) a generated
synthetic dataset (default 200 episodes × 40 steps at 128×128), and reports steps/s (whole job,
start-up included, and excluding a measured empty-job start-up) and the peak RSS of the whole
process tree (launcher + Beam workers), sampled every 100 ms.

    python benchmarks/bench_actions.py [--episodes 200] [--steps 40] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
BRIDGE = REPO.parent / "shared" / "data" / "bridge_debug" / "bridge_dataset" / "1.0.0"
sys.path.insert(0, str(REPO))


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def timed_build(config: str, source: Path, output: Path, workers: int,
                extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "pipeline.cli", "build", "--config", config, "--source",
           str(source), "--output", str(output), "--stages", "actions",
           f"--direct_num_workers={workers}", *extra]
    start = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc))
        time.sleep(0.1)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"build failed:\n{proc.stderr.read().decode()[-3000:]}")
    counts = json.loads((output / "manifest.json").read_text())["counts"]
    return {"wall_s": wall, "steps": counts["steps_out"], "episodes": counts["episodes_out"],
            "peak_rss_mb": peak / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from pipeline.synthetic import write_synthetic_rlds

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        synth = write_synthetic_rlds(tmp / "src", num_episodes=args.episodes,
                                     num_steps=args.steps, image_size=(args.size, args.size),
                                     seed=1, num_shards=4)
        print(f"generated {args.episodes} episodes x {args.steps} steps in "
              f"{time.perf_counter() - t0:.1f}s")
        # Fixed cost of a job (interpreter, TF/Beam imports, worker start-up): one episode.
        base = timed_build("armdata_demo", synth, tmp / "base", args.workers,
                           ["--max-episodes", "1"])
        runs = {"synthetic": timed_build("armdata_demo", synth, tmp / "synth", args.workers, [])}
        if BRIDGE.exists():
            runs["bridge_sample"] = timed_build("bridge_dataset", BRIDGE, tmp / "bridge",
                                                args.workers, [])
        print(f"job start-up (1-episode build): {base['wall_s']:.1f}s, "
              f"peak RSS {base['peak_rss_mb']:.0f} MB")
        print(f"{'dataset':15s} {'episodes':>8s} {'steps':>7s} {'wall s':>7s} {'steps/s':>8s} "
              f"{'steps/s excl. start-up':>22s} {'peak RSS MB':>11s}")
        for name, r in runs.items():
            net = max(r["wall_s"] - base["wall_s"], 1e-6)
            print(f"{name:15s} {r['episodes']:8d} {r['steps']:7d} {r['wall_s']:7.1f} "
                  f"{r['steps'] / r['wall_s']:8.1f} {r['steps'] / net:22.1f} "
                  f"{r['peak_rss_mb']:11.0f}")


if __name__ == "__main__":
    main()
