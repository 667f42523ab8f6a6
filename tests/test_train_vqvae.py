"""`armdata train-vqvae`: streams maps from Parquet row groups or PNG dirs, lowers the
reconstruction error, reports metrics, checkpoints in the loadable layout and resumes."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from models.vqvae import VQVAE, load_vqvae, vqvae_input
from pipeline import train_vqvae as tv
from schemas.episode import encode_png
from tests.tiny_models import synthetic_depth_maps


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    tv.register(parser.add_subparsers())
    return parser.parse_args(["train-vqvae", *argv])


@pytest.fixture(scope="module")
def maps() -> np.ndarray:
    return synthetic_depth_maps(8, 96, 128, seed=3)


@pytest.fixture(scope="module")
def png_dir(tmp_path_factory: pytest.TempPathFactory, maps: np.ndarray) -> Path:
    d = tmp_path_factory.mktemp("pngs")
    for i, m in enumerate(maps):
        Image.fromarray(m).save(d / f"{i}.png")
    return d


def write_dataset(root: Path, maps: np.ndarray, rows_per_group: int) -> Path:
    (root / "data").mkdir(parents=True)
    pngs = [encode_png(m) for m in maps] + [None]      # a step built without a depth map
    table = pa.table({"episode_id": ["e"] * len(pngs), "depth_png": pngs})
    pq.write_table(table, root / "data" / "train-00000-of-00001.parquet",
                   row_group_size=rows_per_group)
    return root


def recon_mse(model: VQVAE, maps: np.ndarray) -> float:
    x = vqvae_input(torch.from_numpy(maps))
    with torch.inference_mode():
        return float(((model.decode(model.encode(x)) - x) ** 2).mean())


def test_parquet_source_streams_each_map_once_by_row_group(tmp_path: Path,
                                                           maps: np.ndarray) -> None:
    source = tv.open_source(write_dataset(tmp_path / "built", maps, rows_per_group=3))
    assert len(source.row_groups) == 3 and source.num_maps == len(maps)
    seen = list(tv.iter_maps(source, seed=0))
    assert sorted(m.tobytes() for m in seen) == sorted(m.tobytes() for m in maps)
    assert [m.tobytes() for m in tv.iter_maps(source, seed=1)] != [m.tobytes() for m in seen]


def test_source_errors(tmp_path: Path, maps: np.ndarray) -> None:
    with pytest.raises(tv.TrainError, match="neither"):
        tv.open_source(tmp_path)
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"episode_id": ["e"]}), tmp_path / "data" / "s.parquet")
    with pytest.raises(tv.TrainError, match="--store-depth"):
        tv.open_source(tmp_path)
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(rgb / "a.png")
    with pytest.raises(tv.TrainError, match="single-channel"):
        list(tv.iter_maps(tv.open_source(rgb), seed=0))


def test_batches_mix_sizes(maps: np.ndarray) -> None:
    x = tv.batch_input([maps[0], maps[1][:50], maps[2]], torch.device("cpu"))
    assert x.shape == (3, 1, 320, 320)


def test_metric_helpers() -> None:
    assert tv.psnr(0.01) == pytest.approx(20.0)
    usage, perplexity = tv.codebook_stats(np.array([5, 5, 0, 0]))
    assert usage == 0.5 and perplexity == pytest.approx(2.0)
    assert tv.codebook_stats(np.zeros(4)) == (0.0, 0.0)


def test_training_lowers_error_checkpoints_and_resumes(tmp_path: Path, png_dir: Path,
                                                       maps: np.ndarray) -> None:
    out = tmp_path / "run"
    common = [str(png_dir), "--out", str(out), "--batch-size", "4", "--lr", "1e-3",
              "--restart-every", "2", "--device", "cpu"]
    args = parse(*common, "--epochs", "2")
    assert args.func(args) == 0
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    for m in lines:
        assert m["maps"] == len(maps)
        assert m["psnr_db"] == pytest.approx(10 * math.log10(1 / m["recon_mse"]))
        assert 0 < m["codebook_usage"] <= 1 and m["perplexity"] >= 1

    torch.manual_seed(0)   # what training starts from
    untrained = recon_mse(VQVAE().eval(), maps)
    trained = load_vqvae(str(out / "vqvae.pt"))
    assert recon_mse(trained, maps) < 0.6 * untrained

    resumed = parse(*common, "--epochs", "3", "--resume")
    assert resumed.func(resumed) == 0
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3]       # only the missing epoch ran
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert state["epoch"] == 3 and "optimizer" in state
    assert load_vqvae(str(out / "train_state.pt")) is not None   # also loadable by --vqvae


def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = parse(str(tmp_path), "--out", str(tmp_path / "o"), "--epochs", "0")
    assert args.func(args) == 2
    args = parse(str(tmp_path), "--out", str(tmp_path / "o"), "--device", "cpu")
    assert args.func(args) == 2
    assert "neither a built dataset" in capsys.readouterr().err
