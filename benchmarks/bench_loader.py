"""Loader throughput and memory: rows/s of one loader worker (read + JPEG decode + MolmoAct sample
formatting + tokenization) with the trainer's pyarrow loader against the `datasets` library
streaming the same Parquet files (same shuffle buffer size, same formatter per row), in the same run;
and the reader's peak RSS for the dataset and for copies 4× its size (each in a fresh process).

    python benchmarks/bench_loader.py --data OUTPUT --model MODEL_DIR [--rows 400]

MODEL_DIR: any model directory with a processor (`armdata.testing.tiny_vlm.save_tiny_vlm` writes one); without
--data/--model a small synthetic dataset is built and a tiny model written first.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"   # the repository's sibling, as in tests


def prepare(work: Path) -> tuple[Path, Path]:
    from armdata.cli import main
    from armdata.testing.synthetic import write_synthetic_rlds
    from armdata.testing.tiny_vlm import save_tiny_vlm

    src = write_synthetic_rlds(work / "src", num_episodes=12, num_steps=20, image_size=(128, 128),
                               seed=1)
    out = work / "out"
    args = ("build", "--config", "armdata_demo", "--source", src, "--output", out, "--stages",
            "actions,depth,trace", "--depth-source", "sensor", "--vqvae",
            SHARED / "fixtures" / "vqvae_molmoact" / "vqvae.pt", "--localizer", "projection",
            "--tracker", "lk", "--depth-device", "cpu", "--trace-device", "cpu",
            "--num-shards", "4", "--direct_running_mode=in_memory", "--direct_num_workers=1")
    if main([str(a) for a in args]) != 0:
        raise SystemExit("build failed")
    return out, save_tiny_vlm(work / "tiny")


def replicate(data: Path, dst: Path, copies: int) -> Path:
    """A dataset directory with `copies` copies of every shard (a dataset `copies`× larger)."""
    (dst / "data").mkdir(parents=True)
    shutil.copy(data / "dataset_statistics.json", dst)
    for k in range(copies):
        for shard in sorted((data / "data").glob("*.parquet")):
            shutil.copy(shard, dst / "data" / f"c{k:03d}-{shard.name}")
    return dst


def ours(data: Path, formatter, rows: int, buffer_groups: int) -> float:
    from armdata.trainer.data import RowStream, open_source, split_units

    source = open_source(str(data))
    stream = RowStream(source, split_units(source.units, 1)[0], [0, 0, 0], buffer_groups)
    rng, counters = np.random.default_rng(0), {}
    start = time.perf_counter()
    for i, row in zip(range(rows), stream.rows()):
        formatter(row, rng, counters)
    return rows / (time.perf_counter() - start)


def hf_datasets(data: Path, formatter, rows: int, buffer: int) -> float:
    import datasets

    files = sorted(str(p) for p in (data / "data").glob("*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
    ds = ds.shuffle(seed=0, buffer_size=buffer).repeat(None)
    rng, counters = np.random.default_rng(0), {}
    start = time.perf_counter()
    for i, row in zip(range(rows), ds):
        formatter(row, rng, counters)
    return rows / (time.perf_counter() - start)


MEMORY_CHILD = """
import resource, sys, io
from PIL import Image
from armdata.trainer.data import RowStream, open_source, split_units
from armdata.trainer.samples import read_image
source = open_source({data!r})
stream = RowStream(source, split_units(source.units, 1)[0], [0, 0, 0], {groups})
for row in stream.rows(0, epochs=1):
    read_image(row["image"])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, source.rows)
"""


def peak_rss(data: Path, groups: int) -> tuple[float, int]:
    code = MEMORY_CHILD.format(data=str(data), groups=groups)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    mb, rows = out.stdout.split()
    return float(mb), int(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--block", type=int, default=4, help="shuffle buffer in row groups")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data, model = args.data, args.model
        if data is None or model is None:
            data, model = prepare(work)
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from armdata.trainer.samples import Formatter, SampleOptions
        from armdata.trainer.tokens import add_answer_tokens

        processor = AutoProcessor.from_pretrained(model)
        tables = add_answer_tokens(processor.tokenizer, AutoModelForImageTextToText.from_pretrained(model))
        formatter = Formatter(processor, tables, SampleOptions())
        from armdata.trainer.data import open_source

        source = open_source(str(data))
        rows_per_group = source.rows / len(source.units)
        buffer = int(args.block * rows_per_group)   # the same number of rows for datasets' buffer
        result: dict = {"rows": args.rows, "dataset_rows": source.rows, "buffer_rows": buffer}
        for r in range(args.repeats):   # interleaved, best of each: the machine is shared
            result.setdefault("ours_rows_per_s", []).append(ours(data, formatter, args.rows, args.block))
            result.setdefault("datasets_rows_per_s", []).append(
                hf_datasets(data, formatter, args.rows, buffer))
        result["ratio"] = max(result["ours_rows_per_s"]) / max(result["datasets_rows_per_s"])
        big = replicate(data, work / "x4", 4)
        for name, path in (("1x", data), ("4x", big)):
            mb, rows = peak_rss(path, args.block)
            result[f"peak_rss_mb_{name}"] = {"rows": rows, "mb": round(mb, 1)}
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
