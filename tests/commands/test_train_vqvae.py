"""`armdata train-vqvae`: streams (or caches) maps from Parquet row groups or PNG dirs, lowers the
reconstruction error without collapsing the codebook, reports metrics, checkpoints in the loadable
layout and resumes."""
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

from armdata.models.vqvae import NUM_CODES, VQVAE, EMACodebook, load_vqvae, vqvae_input
from armdata.commands import train_vqvae as tv
from armdata.schemas.episode import encode_png
from armdata.schemas.output import IMAGE, image_cell
from armdata.testing.tiny_models import synthetic_depth_maps


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


def write_dataset(root: Path, maps: np.ndarray, rows_per_group: int, struct: bool = True) -> Path:
    """depth_png as schema v2 Image structs (what builds write) or v1 plain binary."""
    (root / "data").mkdir(parents=True)
    pngs = [encode_png(m) for m in maps] + [None]      # a step built without a depth map
    column = pa.array([image_cell(p) for p in pngs], IMAGE) if struct else pa.array(pngs)
    table = pa.table({"episode_id": ["e"] * len(pngs), "depth_png": column})
    pq.write_table(table, root / "data" / "train-00000-of-00001.parquet",
                   row_group_size=rows_per_group)
    return root


def recon_mse(model: VQVAE, maps: np.ndarray) -> float:
    x = vqvae_input(torch.from_numpy(maps))
    with torch.inference_mode():
        return float(((model.decode(model.encode(x)) - x) ** 2).mean())


@pytest.mark.parametrize("struct", [True, False])
def test_parquet_source_streams_each_map_once_by_row_group(tmp_path: Path, maps: np.ndarray,
                                                           struct: bool) -> None:
    source = tv.open_source(write_dataset(tmp_path / "built", maps, rows_per_group=3,
                                          struct=struct))
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


def test_cached_stream_yields_every_map_once_per_epoch(png_dir: Path) -> None:
    source = tv.open_source(png_dir)
    cpu = torch.device("cpu")
    streamed = torch.cat(list(tv.BatchStream(source, 3, cpu, cache_bytes=0).epoch(5)))
    cache = tv.BatchStream(source, 3, cpu, cache_bytes=1 << 30)
    assert cache.cached is not None and len(cache) == 3
    epochs = [torch.cat(list(cache.epoch(seed))) for seed in (1, 2)]
    key = lambda x: sorted(m.numpy().tobytes() for m in x)   # noqa: E731
    assert key(epochs[0]) == key(epochs[1]) == key(streamed)
    assert not torch.equal(epochs[0], epochs[1])             # reshuffled


def test_dead_codes_unassigned_or_below_threshold() -> None:
    dead = tv.dead_codes(torch.tensor([0, 3, 5, 0]), torch.tensor([4.0, 0.5, 2.0, 0.0]), 1.0)
    assert dead.tolist() == [True, True, False, True]


def test_restart_seeds_dead_codes_where_the_codebook_is_worst() -> None:
    """k-means++ picks: with two live codes on the left cluster, both dead codes go to the two
    uncovered clusters (a uniform pick would mostly land in the big covered one)."""
    book = EMACodebook(num_codes=4, dim=2)
    book._embedding.copy_(torch.tensor([[0.0, 0.0], [0.1, 0.0], [9.0, 9.0], [9.0, 9.0]]))
    covered = torch.randn(500, 2) * 0.05
    samples = torch.cat([covered, torch.tensor([[10.0, 0.0], [0.0, 10.0]])])
    torch.manual_seed(0)
    assert book.restart(torch.tensor([False, False, True, True]), samples) == 2
    assert sorted(book._embedding[2:].tolist()) == [[0.0, 10.0], [10.0, 0.0]]
    assert torch.equal(book._ema_w[2:], book._embedding[2:])
    assert book._ema_cluster_size[2:].tolist() == [1.0, 1.0]
    fresh = EMACodebook(num_codes=3, dim=2)
    assert fresh.restart(torch.ones(3, dtype=torch.bool), samples[-3:]) == 3   # seeding
    assert len({tuple(e) for e in fresh._embedding.tolist()}) == 3              # no duplicates


def test_training_uses_the_codebook_checkpoints_and_resumes(tmp_path: Path) -> None:
    """One run checks the training's mechanics and its result. The demo's failure mode: a few
    epochs of a few batches each used to collapse every position onto one code. Now codes stay
    spread and the reconstruction beats the mean map. Each epoch writes its metrics and a
    checkpoint; the last epoch runs resumed from the training state."""
    maps = synthetic_depth_maps(24, 120, 160, seed=5)
    d = tmp_path / "pngs"
    d.mkdir()
    for i, m in enumerate(maps):
        Image.fromarray(m).save(d / f"{i}.png")
    out = tmp_path / "run"
    common = [str(d), "--out", str(out), "--batch-size", "4", "--lr", "5e-4",
              "--restart-every", "4", "--device", "cpu"]
    args = parse(*common, "--epochs", "4")
    assert args.func(args) == 0
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3, 4]
    for m in lines:
        assert m["maps"] == len(maps)
        assert m["psnr_db"] == pytest.approx(10 * math.log10(1 / m["recon_mse"]))
        assert 0 < m["codebook_usage"] <= 1 and m["perplexity"] >= 1

    torch.manual_seed(0)   # what training starts from
    untrained = recon_mse(VQVAE().eval(), maps)
    assert recon_mse(load_vqvae(str(out / "vqvae.pt")), maps) < 0.6 * untrained

    resumed = parse(*common, "--epochs", "5", "--resume")
    assert resumed.func(resumed) == 0
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3, 4, 5]     # only the missing epoch ran
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert state["epoch"] == 5 and "optimizer" in state
    assert load_vqvae(str(out / "train_state.pt")) is not None   # also loadable by --vqvae

    model = load_vqvae(str(out / "vqvae.pt"))
    x = vqvae_input(torch.from_numpy(maps))
    with torch.inference_mode():
        codes = model.encode(x)
        mse = float(((model.decode(codes) - x) ** 2).mean())
    used = len(codes.unique())
    assert used >= 0.2 * NUM_CODES, f"only {used} codes in use"
    assert all(len(row.unique()) > 1 for row in codes)      # no frame is a single code
    assert mse < 0.8 * float(((x - x.mean(0)) ** 2).mean())    # measured: ~0.55×


def test_metric_helpers() -> None:
    assert tv.psnr(0.01) == pytest.approx(20.0)
    usage, perplexity = tv.codebook_stats(np.array([5, 5, 0, 0]))
    assert usage == 0.5 and perplexity == pytest.approx(2.0)
    assert tv.codebook_stats(np.zeros(4)) == (0.0, 0.0)


def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = parse(str(tmp_path), "--out", str(tmp_path / "o"), "--epochs", "0")
    assert args.func(args) == 2
    from armdata.cli import main

    assert main(["train-vqvae", str(tmp_path), "--out", str(tmp_path / "o"), "--device",
                 "cpu"]) == 2
    assert "neither a built dataset" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["pickle", "truncated", "not_a_state"])
def test_resume_from_a_refused_state_is_one_line(tmp_path: Path, png_dir: Path,
                                                 capsys: pytest.CaptureFixture, kind: str) -> None:
    """A crafted, cut or foreign train_state.pt: one error line, exit 2, no traceback."""
    from armdata.cli import main

    out = tmp_path / "run"
    out.mkdir()
    state = out / "train_state.pt"
    if kind == "pickle":
        torch.save({"weights": {}, "epoch": 1, "optimizer": argparse.Namespace(lr=1)}, state)
    elif kind == "truncated":
        torch.save({"weights": VQVAE().state_dict(), "epoch": 1, "optimizer": {}}, state)
        state.write_bytes(state.read_bytes()[:5000])
    else:
        torch.save({"weights": VQVAE().state_dict()}, state)
    assert main(["train-vqvae", str(png_dir), "--out", str(out), "--device", "cpu",
                 "--epochs", "1", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("armdata train-vqvae: error: ") and str(state) in err[0]
    assert {"pickle": "weights-only loading refuses", "truncated": "cannot load the training state",
            "not_a_state": "not a train-vqvae training state"}[kind] in err[0]
    assert not (out / "vqvae.pt").exists()
