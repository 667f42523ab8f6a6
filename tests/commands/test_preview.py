"""`armdata preview`: strips of RGB (+trace, gripper) | stored depth | decoded depth tokens."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from armdata.commands import preview
from armdata.schemas.episode import encode_jpeg, encode_png
from armdata.schemas.output import IMAGE, image_cell
from armdata.testing.tiny_models import synthetic_depth_maps

H, W = 48, 64


def run_preview(*argv: str) -> int:
    from armdata.cli import main

    return main(["preview", *argv])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal built dataset: two shards, episode "a" (3 steps, one without depth/trace)."""
    root = tmp_path_factory.mktemp("built")
    (root / "data").mkdir()
    depth = synthetic_depth_maps(3, H, W)
    rgb = encode_jpeg(np.full((H, W, 3), 90, np.uint8))
    rows = [dict(episode_id="a", step=s, image=image_cell(rgb),
                 depth_png=image_cell(encode_png(depth[s])) if s < 2 else None, depth_codes=list(range(s, s + 100)) if s < 2 else None,
                 trace=[[32, 32], [128, 128], [224, 192]] if s < 2 else None,
                 gripper_xy=[8.0, 8.0]) for s in (2, 0, 1)]
    schema = pa.schema([("episode_id", pa.string()), ("step", pa.int32()),
                        ("image", IMAGE), ("depth_png", IMAGE),   # schema v2 Image structs
                        ("depth_codes", pa.list_(pa.uint8())),
                        ("trace", pa.list_(pa.list_(pa.int16()))),
                        ("gripper_xy", pa.list_(pa.float32()))])
    pq.write_table(pa.Table.from_pylist(rows, schema), root / "data" / "train-00000.parquet")
    other = [dict(rows[0], episode_id="b")]
    pq.write_table(pa.Table.from_pylist(other, schema), root / "data" / "train-00001.parquet")
    return root


def test_trace_pixels_and_arrowhead() -> None:
    assert preview.trace_pixels([[0, 0], [128, 64], [255, 255]], 320, 256) == [
        (0.0, 0.0), (160.0, 64.0), (318.75, 255.0)]
    tip, left, right = preview.arrowhead((0.0, 0.0), (10.0, 0.0), 4.0)
    assert tip == (10.0, 0.0)
    assert left[0] == pytest.approx(10 - 4 * math.cos(math.radians(25)))
    assert left[1] == pytest.approx(-right[1]) and left[1] < 0


def test_preview_writes_strips(built: Path, tiny_vqvae: Path, tmp_path: Path) -> None:
    out = tmp_path / "strips"
    assert run_preview(str(built), "--episode", "a", "--out", str(out), "--vqvae", str(tiny_vqvae),
                       "--device", "cpu", "--height", "96") == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["step_0000.png", "step_0001.png", "step_0002.png"]
    full = np.asarray(Image.open(out / "step_0000.png"))
    top = preview.TITLE_HEIGHT                                      # a title above each panel
    assert full.shape == (top + 96, 3 * 128 + 2 * preview.GAP, 3)  # RGB | depth | decoded
    for k in range(3):
        assert full[:top, k * (128 + preview.GAP):k * (128 + preview.GAP) + 128].max() > 200
    full = full[top:]
    bare = np.asarray(Image.open(out / "step_0002.png"))
    assert bare.shape == (top + 96, 128, 3)                         # no depth, no codes
    bare = bare[top:]
    rgb = full[:, :128].astype(int)
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 100)
    green = (rgb[..., 1] > 200) & (rgb[..., 0] < 100)
    assert red.any() and green.any()
    ys, xs = np.nonzero(red)
    assert xs.max() >= 100 and ys.max() >= 65                       # reaches the last point
    assert not ((bare[..., 0] > 200) & (bare[..., 1] < 100)).any()  # no trace drawn
    stored = full[:, 128 + preview.GAP:256 + preview.GAP, 0]
    expected = np.asarray(Image.fromarray(synthetic_depth_maps(3, H, W)[0])
                          .resize((128, 96), Image.BILINEAR))
    assert np.abs(stored.astype(int) - expected).max() <= 1


def test_preview_without_vqvae_omits_decoded_panel(built: Path, tmp_path: Path) -> None:
    assert run_preview(str(built), "--episode", "a", "--out", str(tmp_path), "--device",
                       "cpu", "--height", "48") == 0
    assert np.asarray(Image.open(tmp_path / "step_0000.png")).shape == (
        preview.TITLE_HEIGHT + 48, 2 * 64 + 4, 3)


def test_preview_errors(built: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_preview(str(built), "--episode", "zzz", "--out", str(tmp_path)) == 2
    assert "not found" in capsys.readouterr().err
    assert run_preview(str(tmp_path), "--episode", "a", "--out", str(tmp_path)) == 2
    assert "no Parquet shards" in capsys.readouterr().err
