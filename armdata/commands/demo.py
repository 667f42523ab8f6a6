"""`armdata demo`: the whole job on a small built-in example, offline.

1. write a synthetic RLDS dataset with tfds' own writer (`armdata.testing.synthetic`);
2. without `--vqvae`: train a depth VQ-VAE (the MolmoAct architecture) on the dataset's own sensor
   depth maps (every other step's: neighbours are near copies), since the published checkpoint
   cannot be downloaded offline;
3. build with every stage: actions, depth (sensor depth → VQ-VAE codes), trace (projection
   localizer + the default `affine` tracker guided by the state), reasoning with the parts that
   need no model weights (motion, and the plan from `--planner rules`; captions and objects need
   Hub weights, so they are off);
4. inspect the result, report the tracker's error against the synthetic ground truth and write
   `preview` strips of one episode;
5. train a tiny random-weight VLM (real Qwen2 tokenizer) for a few steps on the built shards and
   run `predict` on one frame: the trainer's whole path, not a useful model;
6. write `armdata view`'s static site of the dataset.
Everything stays in `--workdir` (default ./armdata-demo) for the user to open.
"""
from __future__ import annotations

import argparse
import itertools
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from armdata.errors import UsageError

SEED = 0   # the synthetic dataset's seed; the trace report re-renders its ground truth from it
MARKER = ".armdata-demo"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="build a small synthetic dataset end to end")
    p.add_argument("--workdir", default="armdata-demo",
                   help="folder for the source, the built dataset and the previews (default "
                        "./armdata-demo; rerunning the demo replaces what it wrote there)")
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--size", type=int, default=128, help="image height and width")
    p.add_argument("--vqvae", help="VQ-VAE checkpoint to use instead of training one")
    p.add_argument("--vqvae-epochs", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=6, help="tiny-model training steps (0: skip)")
    p.set_defaults(func=run, accepts_beam_args=True)


def write_depth_pngs(version_dir: Path, out: Path, every: int = 1) -> int:
    """The dataset's sensor depth of every `every`-th step as 8-bit PNGs, converted exactly as
    the depth stage does."""
    import tensorflow_datasets as tfds
    import torch

    from armdata.models.depth_anything import depth_to_u8
    from armdata.schemas.episode import encode_png
    from armdata.transforms.depth import sensor_disparity

    out.mkdir(parents=True, exist_ok=True)
    n = 0
    ds = tfds.builder_from_directory(str(version_dir)).as_dataset(split="train")
    for episode in tfds.as_numpy(ds):
        for step in itertools.islice(episode["steps"], 0, None, every):
            disparity, problems = sensor_disparity(torch.from_numpy(step["observation"]["depth"])[None])
            if problems[0] is None:
                (out / f"{n:06d}.png").write_bytes(encode_png(depth_to_u8(disparity)[0].numpy()))
                n += 1
    return n


def trace_report(output: Path, steps: int, size: int) -> dict[str, float]:
    """Tracked gripper positions and the written traces against the synthetic ground truth (the
    rendered end-effector position and its visibility), re-rendered from the generator's seed:
    `trace_error` on visible steps, the share of steps reported visible, and `trace_scores`
    (prefixed `trace_`) pooled over episodes."""
    from armdata.testing.synthetic import gripper_pixels, render_episode
    from armdata.transforms.trace import trace_error, trace_scores

    episodes: dict[int, list[dict]] = {}
    for shard in sorted((output / "data").glob("*.parquet")):
        rows = pq.read_table(shard, columns=["step", "gripper_xy", "gripper_visible",
                                             "episode_metadata"]).to_pylist()
        for row in rows:
            episodes.setdefault(json.loads(row["episode_metadata"])["episode_id"], []).append(row)
    est, truth, visible, reported = [], [], [], []
    identical = same = points = 0.0
    units: list[float] = []
    for index, rows in sorted(episodes.items()):
        rows.sort(key=lambda row: row["step"])
        ep = render_episode(SEED, index, steps, (size, size))
        at = [row["step"] for row in rows]
        gt_xy = gripper_pixels(ep.state, ep.intrinsics, ep.extrinsics)[at]
        gt_visible = ep.gripper_visible[at]
        xy = np.array([row["gripper_xy"] or [np.nan, np.nan] for row in rows], np.float64)
        seen = np.array([bool(row["gripper_visible"]) for row in rows])
        est.append(xy)
        truth.append(gt_xy)
        visible.append(gt_visible)
        reported.append(seen)
        scores = trace_scores(xy, seen, gt_xy, gt_visible, size, size)
        identical += scores["identical"] * len(rows)
        same += scores["same_length"] * len(rows)
        points += scores["points"]
        if scores["points"]:
            units.append(scores["mean_units"] * scores["points"])
    report = trace_error(np.concatenate(est), np.concatenate(truth), np.concatenate(visible))
    steps_total = sum(len(r) for r in reported)
    report["reported_visible"] = float(np.concatenate(reported).mean()) if steps_total \
        else float("nan")
    report["trace_identical"] = identical / steps_total if steps_total else float("nan")
    report["trace_same_length"] = same / steps_total if steps_total else float("nan")
    report["trace_mean_units"] = sum(units) / points if points else float("nan")
    return report


def prepare_workdir(work: Path) -> None:
    """A fresh or earlier demo folder (marked by MARKER): the demo never deletes anything else."""
    if work.exists() and any(work.iterdir()) and not (work / MARKER).exists():
        raise UsageError(f"{work} is not empty and not an armdata demo folder; choose another "
                         f"--workdir")
    for name in ("source", "depth_png", "vqvae", "preview", "tiny_vlm", "train"):   # regenerated
        shutil.rmtree(work / name, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text("written by `armdata demo`; rerunning the demo replaces it\n")


def first_episode(output: Path) -> str:
    manifest = json.loads((output / "manifest.json").read_text())
    return pq.read_table(output / manifest["shards"][0]["path"],
                         columns=["episode_id"]).column(0)[0].as_py()


def train_and_predict(work: Path, output: Path, steps: int) -> int:
    from armdata.cli import main
    from armdata.schemas.output import image_bytes
    from armdata.testing.tiny_vlm import save_tiny_vlm

    print("[demo] training a tiny random-weight VLM on the built shards "
          f"({steps} steps; the Qwen2 tokenizer is built offline first)")
    model = save_tiny_vlm(work / "tiny_vlm")
    run_dir = work / "train"
    code = main(["train", "--data", str(output), "--out", str(run_dir), "--model", str(model),
                 "--max-steps", str(steps), "--micro-batch", "1", "--workers", "1", "--lr", "3e-3",
                 "--warmup", "2", "--log-every", "2", "--eval-every", str(steps),
                 "--eval-batches", "2", "--save-every", str(steps)])
    if code != 0:
        return code
    row = pq.read_table(sorted((output / "data").glob("*.parquet"))[0],
                        columns=["image", "wrist_image", "instruction"]).slice(0, 1).to_pylist()[0]
    cameras = []   # every camera the row has, as the model was trained
    for flag, column, name in (("--image", "image", "frame.jpg"),
                               ("--wrist-image", "wrist_image", "frame_wrist.jpg")):
        if row[column] is not None:
            path = work / name
            path.write_bytes(image_bytes(row[column]))
            cameras += [flag, str(path)]
    print(f"[demo] predict on one frame ({row['instruction']!r}); random weights, {steps} "
          f"steps: expect noise")
    return main(["predict", "--model", str(run_dir / "model"), *cameras,
                 "--instruction", row["instruction"]])


def reasoning_line(output: Path) -> str:
    """The composed `reasoning` text of one row in the middle of the first shard."""
    table = pq.read_table(sorted((output / "data").glob("*.parquet"))[0], columns=["reasoning"])
    return table.column(0)[table.num_rows // 2].as_py()


def run(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    from armdata.cli import main as cli_main
    from armdata.testing.synthetic import write_synthetic_rlds

    def main(argv: list[str]) -> int:   # the same logging for every step
        return cli_main((["--verbose"] if args.verbose else []) + argv)

    for name in ("episodes", "steps", "size", "vqvae_epochs"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got "
                             f"{getattr(args, name)}")
    if args.train_steps < 0:
        raise UsageError(f"--train-steps must be 0 (skip) or more, got {args.train_steps}")
    start = time.perf_counter()
    work = Path(args.workdir).resolve()
    prepare_workdir(work)
    print(f"[demo] working in {work}")
    source = write_synthetic_rlds(work / "source", num_episodes=args.episodes,
                                  num_steps=args.steps, image_size=(args.size, args.size),
                                  seed=SEED)
    print(f"[demo] synthetic RLDS dataset: {source}")
    vqvae = args.vqvae
    if vqvae is None:
        # Every other step: neighbouring steps' maps are near copies, and each 320x320 map costs
        # the CPU about a second per epoch, the demo's largest cost.
        n = write_depth_pngs(source, work / "depth_png", every=2)
        print(f"[demo] training a depth VQ-VAE on {n} sensor depth maps (every other step; "
              f"{args.vqvae_epochs} epochs)")
        # Small batches with a dead-code check every 4: on a CPU, a few epochs of many small
        # steps learn a spread codebook where a few large steps cannot.
        if main(["train-vqvae", str(work / "depth_png"), "--out", str(work / "vqvae"),
                 "--epochs", str(args.vqvae_epochs), "--batch-size", "4", "--lr", "5e-4",
                 "--restart-every", "4"]) != 0:
            return 1
        vqvae = str(work / "vqvae" / "vqvae.pt")
    output = work / "output"
    code = main(["build", "--config", "armdata_demo", "--source", str(source),
                 "--output", str(output), "--overwrite", "--num-shards", "2",
                 "--stages", "actions,depth,trace,reasoning",
                 "--depth-source", "sensor", "--vqvae", vqvae, "--store-depth",
                 "--localizer", "projection", "--reasoning-parts", "motion,plan",
                 "--planner", "rules", *(beam_args or [])])
    if code != 0:
        return code
    print(f"[demo] built {output}")
    print("[demo] reasoning: motion and the rule-based plan (--planner rules); captions and "
          "objects are off (their models' weights come from the Hub)")
    print(f"[demo] one row's reasoning: {reasoning_line(output)}")
    code = main(["inspect", str(output), "--rows", "2"])
    err = trace_report(output, args.steps, args.size)
    print("[demo] tracker vs ground truth: " + ", ".join(
        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in err.items()))
    preview = work / "preview"
    if main(["preview", str(output), "--episode", first_episode(output), "--out", str(preview),
             "--vqvae", vqvae, "--device", "cpu"]) != 0:
        return 1
    if code == 0 and args.train_steps:
        code = train_and_predict(work, output, args.train_steps)
    if main(["view", str(output), "--out", str(work / "view"), "--episodes", "3",
             "--vqvae", vqvae]) != 0:
        return 1
    print(f"[demo] done in {time.perf_counter() - start:.0f}s; everything is in {work}: "
          f"output/ (the dataset, README.md is its card), preview/ (one PNG per step of an "
          f"episode: frame + trace | depth | decoded depth tokens), view/ (the dataset's site), "
          f"source/ (the input), vqvae/ (the depth tokenizer), tiny_vlm/ (a random-weight VLM: "
          f"an offline --model for train/predict), train/ (the run trained from it)")
    print(f"[demo] open the view of the dataset: {work / 'view' / 'index.html'}")
    return code
