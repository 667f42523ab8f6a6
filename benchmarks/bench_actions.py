"""Throughput and peak memory of `armdata build --stages actions` against the script a user would
write instead, on the same generated data in the same run.

The data: a synthetic RLDS dataset written with tfds (default 300 episodes × 40 steps, 256×256 JPEG
main and wrist images, float32 sensor depth, 16 TFRecord shards). The baseline (`naive_script`
below, run as its own process): `tfds.builder_from_directory`, images left encoded with
`SkipDecoding`, `flat_map` over the steps, `batch(1024)`, numpy q01/q99, 256-bin digitize, one
pyarrow Parquet write; it validates nothing. armdata runs the real command (default Beam options:
in its own process up to 150 episodes, else one worker process per core, forked from the launcher)
and checks every image (JPEG structure, `schemas/jpeg.py`), action and state. Both are timed as
whole commands, start-up included; peak memory is the proportional set size (PSS) of the whole
process tree, sampled every 100 ms, so that pages shared by forked workers count once (RSS where
PSS cannot be read); CPU is user + system seconds of the command and the processes it waited for
(forked workers included: their server reaps them). Before every run the source files are read
once, so both sides read them from the page cache, and the two alternate which goes first. Each
row gives the 1-minute load average when it started. Run it on an otherwise idle machine: both
sides are mostly start-up and I/O.

    python benchmarks/bench_actions.py [--episodes 300] [--steps 40] [--size 256] [--shards 16]
                                       [--repeat 1] [--data DIR] [armdata build options]

`--data DIR` keeps the generated dataset in DIR (generated on first use; takes minutes) so that
repeated runs skip generation.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import py_compile
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]

NAIVE_SCRIPT = r'''
import sys
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow_datasets as tfds

source, output = sys.argv[1:3]
builder = tfds.builder_from_directory(source)
skip = tfds.decode.SkipDecoding()
ds = builder.as_dataset(split="train", shuffle_files=False, decoders={
    "steps": {"observation": {"image": skip, "wrist_image": skip}}})
ds = ds.flat_map(lambda episode: episode["steps"]).batch(1024)
cols = {"image": [], "wrist_image": [], "state": [], "action": [], "instruction": []}
for batch in tfds.as_numpy(ds):
    cols["image"] += list(batch["observation"]["image"])
    cols["wrist_image"] += list(batch["observation"]["wrist_image"])
    cols["state"].append(batch["observation"]["state"])
    cols["action"].append(batch["action"])
    cols["instruction"] += [s.decode() for s in batch["language_instruction"]]
action = np.concatenate(cols["action"])
state = np.concatenate(cols["state"])
q01, q99 = np.quantile(action, [0.01, 0.99], axis=0)
normalized = np.clip(2 * (action - q01) / np.maximum(q99 - q01, 1e-8) - 1, -1, 1)
bins = np.digitize(normalized, np.linspace(-1, 1, 256)).astype(np.int16)
table = pa.table({"image": cols["image"], "wrist_image": cols["wrist_image"],
                  "instruction": cols["instruction"], "state": list(state),
                  "action": list(action), "action_normalized": list(normalized),
                  "action_bins": list(bins)})
pq.write_table(table, output, compression="zstd")
print(table.num_rows)
'''


def tree_memory(proc: psutil.Process) -> int:
    """PSS (RSS where /proc does not give PSS) summed over a process and its descendants."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except psutil.AccessDenied:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str]) -> tuple[float, float, int, str]:
    """(wall seconds, CPU seconds, peak PSS of the process tree, stdout) of a command that must
    succeed."""
    cpu = children_cpu()
    start = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_memory(proc))
        time.sleep(0.1)
    wall = time.perf_counter() - start
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{err.decode()[-3000:]}")
    return wall, children_cpu() - cpu, peak, out.decode()


def byte_compile_armdata() -> int:
    """Byte-compile the modules an armdata build imports, as installing a package does: with
    PYTHONDONTWRITEBYTECODE set (as on the development machine) an editable install is compiled
    from source at every start, while the naive script's libraries are installed compiled."""
    from armdata.cli import make_parser

    importlib.import_module("armdata.beam_worker")   # the worker processes' entry point
    make_parser(["build"])   # imports the build command and its stage modules
    files = {m.__file__ for name, m in list(sys.modules.items())
             if name.split(".")[0] == "armdata" and str(getattr(m, "__file__", "")).endswith(".py")}
    for path in files:
        py_compile.compile(path, doraise=True)
    return len(files)


def read_once(source: Path) -> None:
    """Read every file of the source, so that the timed commands find it in the page cache."""
    for path in sorted(source.iterdir()):
        with open(path, "rb") as f:
            while f.read(64 << 20):
                pass


def run_naive(source: Path, output: Path) -> dict:
    wall, cpu, peak, out = timed([sys.executable, "-c", NAIVE_SCRIPT, str(source), str(output)])
    return {"wall_s": wall, "cpu_s": cpu, "steps": int(out.split()[-1]),
            "peak_mb": peak / 2**20}


def run_armdata(source: Path, output: Path, extra: list[str]) -> dict:
    wall, cpu, peak, _ = timed([sys.executable, "-m", "armdata.cli", "build", "--config",
                                "armdata_demo", "--source", str(source), "--output", str(output),
                                "--stages", "actions", *extra])
    counts = json.loads((output / "manifest.json").read_text())["counts"]
    return {"wall_s": wall, "cpu_s": cpu, "steps": counts["steps_out"],
            "peak_mb": peak / 2**20}


def dataset(root: Path, args: argparse.Namespace) -> Path:
    from armdata.testing.synthetic import VERSION, write_synthetic_rlds

    version_dir = root / "armdata_demo" / VERSION
    if (version_dir / "dataset_info.json").exists():
        print(f"using the dataset in {version_dir}")
        return version_dir
    t0 = time.perf_counter()
    write_synthetic_rlds(root, num_episodes=args.episodes, num_steps=args.steps,
                         image_size=(args.size, args.size), seed=1, num_shards=args.shards)
    print(f"generated {args.episodes} episodes x {args.steps} steps ({args.size}x{args.size}, "
          f"{args.shards} shards) in {time.perf_counter() - t0:.0f}s")
    return version_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=1,
                    help="alternate the two this many times; the median ratio is reported")
    ap.add_argument("--data", type=Path, help="keep/reuse the generated dataset here")
    args, extra = ap.parse_known_args()   # the rest goes to armdata build (e.g. Beam options)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = dataset(args.data or tmp / "src", args)
        print(f"byte-compiled {byte_compile_armdata()} armdata modules")
        print(f"{'run':>3s} {'command':8s} {'load':>5s} {'steps':>6s} {'wall s':>7s} "
              f"{'CPU s':>6s} {'steps/s':>8s} {'peak PSS MB':>11s} {'naive/armdata':>13s}")
        ratios, loads = [], []
        for i in range(args.repeat):
            read_once(source)
            runs = {}
            order = (("naive", lambda: run_naive(source, tmp / f"naive{i}.parquet")),
                     ("armdata", lambda: run_armdata(source, tmp / f"armdata{i}", extra)))
            for name, run in order if i % 2 == 0 else order[::-1]:
                load = os.getloadavg()[0]
                loads.append(load)
                runs[name] = {**run(), "load": load}
            naive, ours = runs["naive"], runs["armdata"]
            if naive["steps"] != ours["steps"]:
                raise SystemExit(f"step counts differ: naive {naive['steps']}, "
                                 f"armdata {ours['steps']}")
            ratio = naive["wall_s"] / ours["wall_s"]
            ratios.append(ratio)
            for name, r in runs.items():
                print(f"{i:3d} {name:8s} {r['load']:5.1f} {r['steps']:6d} {r['wall_s']:7.2f} "
                      f"{r['cpu_s']:6.2f} {r['steps'] / r['wall_s']:8.1f} "
                      f"{r['peak_mb']:11.0f} "
                      f"{f'{ratio:.2f}x' if name == 'armdata' else '':>13s}")
        print(f"median naive/armdata wall ratio over {len(ratios)} runs: "
              f"{statistics.median(ratios):.2f}x (load average {min(loads):.1f}-{max(loads):.1f})")


if __name__ == "__main__":
    main()
