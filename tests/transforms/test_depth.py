"""The depth stage (Depth Anything V2 + VQ-VAE) with tiny random-weight models loaded from disk the
way real ones are, the sensor-depth path, the pure helpers and `armdata depth-tokens`."""
from __future__ import annotations

import argparse
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from PIL import Image

from armdata.models.depth_anything import depth_to_u8, model_input_size
from armdata.schemas.config import ConfigError, DatasetConfig
from armdata.schemas.episode import Episode, Step, encode_jpeg, encode_png
from armdata.transforms import depth as depth_stage
from armdata.transforms.depth import DepthStage, sensor_disparity
from armdata.testing.tiny_models import synthetic_depth_maps


@pytest.fixture(scope="module")
def assets(tiny_depth_model: Path, tiny_vqvae: Path) -> tuple[Path, Path]:
    return tiny_depth_model, tiny_vqvae


def frames(n: int, h: int = 42, w: int = 56, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


def episode(images: list[bytes], depths: list[np.ndarray | None] | None = None) -> Episode:
    depths = depths or [None] * len(images)
    steps = [Step(index=i, image=img, action=np.zeros(7, np.float32),
                  state=np.zeros(0, np.float32), instruction="pick", sensor_depth=d)
             for i, (img, d) in enumerate(zip(images, depths))]
    return Episode(dataset="test", episode_id="ep0", num_steps=len(steps), steps=steps)


def stage(assets: tuple[Path, Path], **kw) -> DepthStage:
    s = DepthStage(depth_model=str(assets[0]), vqvae=str(assets[1]), device="cpu", **kw)
    s.setup()
    return s


@given(h=st.integers(8, 2000), w=st.integers(8, 2000))
def test_model_input_size(h: int, w: int) -> None:
    nh, nw = model_input_size(h, w)
    assert nh % 14 == 0 and nw % 14 == 0
    assert min(nh, nw) >= 518 and min(nh, nw) <= 518 + 13
    assert abs(nh / nw - h / w) <= 14 / min(nh, nw) * (1 + h / w)


def test_model_input_size_examples() -> None:
    assert model_input_size(256, 320) == (518, 644)
    assert model_input_size(256, 256) == (518, 518)
    assert model_input_size(480, 640) == (518, 686)


def test_depth_to_u8_is_spec_formula() -> None:
    d = torch.rand(3, 7, 9, dtype=torch.float64) * 10
    d[2] = 4.0                      # constant map: all zeros, no division by zero
    got = depth_to_u8(d).numpy()
    for i in range(3):
        a = d[i].numpy()
        expected = ((a - a.min()) / (a.max() - a.min() + 1e-8) * 255).astype(np.uint8)
        np.testing.assert_array_equal(got[i], expected)


def test_sensor_disparity() -> None:
    depth = torch.tensor([[[1.0, 2.0], [4.0, float("nan")]],
                          [[0.0, -1.0], [float("inf"), float("nan")]],
                          [[3.0, 3.0], [3.0, 0.0]]])
    disp, problems = sensor_disparity(depth)
    assert disp[0].tolist() == [[1.0, 0.5], [0.25, 0.25]]   # invalid → farthest valid value
    assert problems[0] is None
    assert problems[1][0] == "sensor_depth_invalid"
    assert problems[2][0] == "sensor_depth_constant"


def test_stage_model_path(assets) -> None:
    s = stage(assets, batch_size=2, store_depth=True)
    imgs = [encode_jpeg(f) for f in frames(3)] + [b"not an image"]
    ep, rejections = s.process(episode(imgs))
    assert ep is not None and [st.index for st in ep.steps] == [0, 1, 2]
    assert [(r.step, r.stage) for r in rejections] == [(3, "depth")]
    assert "cannot decode" in rejections[0].reason
    assert s.counters["image_corrupt"] == 1 and s.counters["frames"] == 3
    for step in ep.steps:
        assert step.depth_codes.dtype == np.uint8 and step.depth_codes.shape == (100,)
        assert int(step.depth_codes.max()) < 128
        with Image.open(io.BytesIO(step.depth_png)) as png:
            assert png.mode == "L" and png.size == (56, 42)
            d8 = np.asarray(png)     # min-max spans 0..255 (less the SPEC's +1e-8, which is
            assert d8.min() == 0 and d8.max() > 200   # visible on the tiny model's ~1e-6 range)
    # The codes are those of the stored 8-bit map (SPEC §2 steps 3-4).
    from armdata.models.vqvae import load_vqvae, vqvae_input
    vq = load_vqvae(str(assets[1]))
    d8 = torch.from_numpy(np.asarray(Image.open(io.BytesIO(ep.steps[0].depth_png))).copy())
    with torch.inference_mode():
        assert vq.encode(vqvae_input(d8[None]))[0].tolist() == ep.steps[0].depth_codes.tolist()


def test_batch_equals_single_calls(assets) -> None:
    imgs = [encode_png(f) for f in frames(5, seed=1)]
    batched, _ = stage(assets, batch_size=5, store_depth=True).process(episode(imgs))
    single, _ = stage(assets, batch_size=1, store_depth=True).process(episode(imgs))
    for a, b in zip(batched.steps, single.steps):
        ma = np.asarray(Image.open(io.BytesIO(a.depth_png)), np.int16)
        mb = np.asarray(Image.open(io.BytesIO(b.depth_png)), np.int16)
        assert np.abs(ma - mb).max() <= 1 and (ma != mb).mean() < 0.01
        assert a.depth_codes.tolist() == b.depth_codes.tolist()


def test_frames_of_two_sizes(assets) -> None:
    imgs = [encode_png(f) for f in frames(2)] + [encode_png(frames(1, 30, 40)[0])]
    ep, rejections = stage(assets, batch_size=8, store_depth=True).process(episode(imgs))
    assert not rejections
    assert Image.open(io.BytesIO(ep.steps[2].depth_png)).size == (40, 30)


def test_stage_pickles_without_models(assets) -> None:
    s = stage(assets)
    blob = pickle.dumps(s)
    assert len(blob) < 10_000          # models are not part of the pickled stage
    clone = pickle.loads(blob)
    ep, _ = clone.process(episode([encode_png(frames(1)[0])]))    # loads in setup on first use
    assert ep.steps[0].depth_codes is not None


def test_sensor_path(assets) -> None:
    yy, xx = np.mgrid[0:24, 0:32].astype(np.float32)
    near_top = 1.0 + yy / 10                     # metres: top rows nearest
    bad = np.full((24, 32), np.nan, np.float32)
    flat = np.full((24, 32), 2.0, np.float32)
    imgs = [encode_png(np.zeros((24, 32, 3), np.uint8))] * 4
    s = DepthStage(vqvae=str(assets[1]), device="cpu", source="sensor", store_depth=True)
    ep, rejections = s.process(episode(imgs, [near_top, bad, flat, None]))
    assert [st.index for st in ep.steps] == [0]
    d8 = np.asarray(Image.open(io.BytesIO(ep.steps[0].depth_png)))
    assert d8[0].min() == 255 and d8[-1].max() == 0          # nearer = larger
    assert np.all(np.diff(d8[:, 0].astype(int)) <= 0)
    assert {r.step: r.reason for r in rejections} == {
        1: "sensor depth has no finite positive pixel", 2: "sensor depth is constant",
        3: "step has no sensor depth"}
    assert s.counters["sensor_depth_missing"] == 1
    assert s._depth is None                                   # no depth model loaded


def test_whole_episode_rejected_when_no_frame_is_usable(assets) -> None:
    ep, rejections = stage(assets).process(episode([b"x", b"y"]))
    assert ep is None
    assert sum(r.steps for r in rejections) == 2


def build_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device")     # another stage's option must not clash
    depth_stage.add_build_arguments(parser)
    return parser.parse_args(list(argv))


def test_build_arguments_and_stage_from_args() -> None:
    config = DatasetConfig(name="d", standardize="bridge", image_key="image",
                           require_instruction=False)
    args = build_args("--depth-model", "m", "--vqvae", "v.pt", "--depth-batch-size", "4",
                      "--store-depth", "--depth-device", "cpu")
    s = depth_stage.stage_from_args(args, config)
    assert (s.depth_model, s.vqvae_path, s.batch_size, s.device_choice, s.source,
            s.store_depth) == ("m", "v.pt", 4, "cpu", "model", True)
    defaults = build_args()
    assert defaults.depth_model == "depth-anything/Depth-Anything-V2-Base-hf"
    assert defaults.vqvae is None and defaults.depth_source == "model"
    with pytest.raises(ConfigError, match="depth_key"):
        depth_stage.stage_from_args(build_args("--depth-source", "sensor"), config)
    with pytest.raises(ConfigError, match="batch-size"):
        depth_stage.stage_from_args(build_args("--depth-batch-size", "0"), config)


def run_depth_tokens(*argv: str) -> int:
    from armdata.cli import main

    return main(["depth-tokens", *argv])


def test_depth_tokens_cli(assets, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    depth_map = tmp_path / "depth.png"
    Image.fromarray(synthetic_depth_maps(1, 60, 80)[0]).save(depth_map)
    rgb = tmp_path / "frame.jpg"
    Image.fromarray(frames(1)[0]).save(rgb)
    rc = run_depth_tokens("--vqvae", str(assets[1]), "--depth-model", str(assets[0]),
                          "--device", "cpu", "--json", str(depth_map), str(rgb))
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["file"], r["source"]) for r in out] == [(str(depth_map), "depth_map"),
                                                       (str(rgb), "rgb")]
    from armdata.models.vqvae import load_vqvae, vqvae_input
    vq = load_vqvae(str(assets[1]))
    d8 = torch.from_numpy(np.asarray(Image.open(depth_map)).copy())[None]
    with torch.inference_mode():
        assert out[0]["codes"] == vq.encode(vqvae_input(d8))[0].tolist()
    for r in out:
        assert len(r["codes"]) == 100 and r["tokens"].startswith("<DEPTH_START><DEPTH_")

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    assert run_depth_tokens("--vqvae", str(assets[1]), "--device", "cpu", str(depth_map),
                            str(bad)) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{depth_map}\t<DEPTH_START>")
    assert "bad.png: error" in captured.err


def test_depth_tokens_offline_hub_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    import huggingface_hub

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")   # no reachability probe: the hint is what counts
    image = tmp_path / "x.png"                    # an existing file: missing files are refused first
    Image.new("RGB", (8, 8)).save(image)
    assert run_depth_tokens("--device", "cpu", str(image)) == 2
    assert "--vqvae PATH" in capsys.readouterr().err


@pytest.fixture(scope="module")
def nan_depth_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny depth model with a head that outputs NaN (a broken checkpoint)."""
    from armdata.models.depth_anything import depth_anything_config, random_depth_model
    from armdata.testing.tiny_models import TINY_DEPTH

    model = random_depth_model(depth_anything_config(**TINY_DEPTH))
    with torch.no_grad():
        for p in model.head.parameters():
            p.fill_(float("nan"))
    directory = tmp_path_factory.mktemp("nan_depth") / "depth_model"
    model.save_pretrained(directory)
    return directory


def test_depth_to_codes_kinds(assets) -> None:
    from armdata.models.vqvae import load_vqvae, vqvae_input

    vq = load_vqvae(str(assets[1]))
    maps = torch.from_numpy(synthetic_depth_maps(2, 30, 40))
    with torch.inference_mode():
        out, codes, problems = depth_stage.depth_to_codes(vq, maps, "depth_map")
        assert out is maps and problems == [None, None]
        assert codes.tolist() == vq.encode(vqvae_input(maps)).tolist()
        with pytest.raises(ValueError, match="depth input must be one of"):
            depth_stage.depth_to_codes(vq, maps, "disparity")


def test_non_finite_depth_is_refused_by_stage_and_depth_tokens(assets, nan_depth_model,
                                                               tmp_path, capsys) -> None:
    """One chain: a depth model that outputs NaN drops the stage's step and is an error of
    `armdata depth-tokens`, with the same reason (it used to print codes of a NaN map)."""
    s = DepthStage(depth_model=str(nan_depth_model), vqvae=str(assets[1]), device="cpu")
    ep, rejections = s.process(episode([encode_png(frames(1)[0])]))
    assert ep is None and rejections[0].reason == "depth model output is not finite"
    assert s.counters["depth_not_finite"] == 1
    rgb = tmp_path / "frame.png"
    Image.fromarray(frames(1)[0]).save(rgb)
    assert run_depth_tokens("--vqvae", str(assets[1]), "--depth-model", str(nan_depth_model),
                            "--device", "cpu", "--json", str(rgb)) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == [{"file": str(rgb),
                                         "error": "depth model output is not finite"}]
    assert captured.err.splitlines()[-1] == f"{rgb}: error: depth model output is not finite"


def test_depth_tokens_of_a_frame_are_the_stage_codes(assets, tmp_path, capsys) -> None:
    images = frames(3, seed=4)
    ep, _ = stage(assets, batch_size=1).process(episode([encode_png(f) for f in images]))
    files = []
    for k, image in enumerate(images):
        files.append(str(tmp_path / f"{k}.png"))
        Image.fromarray(image).save(files[-1])
    assert run_depth_tokens("--vqvae", str(assets[1]), "--depth-model", str(assets[0]),
                            "--device", "cpu", "--json", *files) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["codes"] for r in out] == [s.depth_codes.tolist() for s in ep.steps]


def test_depth_tokens_batches_files_of_one_kind_and_size_in_order(assets, tmp_path, capsys,
                                                                  monkeypatch) -> None:
    """Depth maps of two sizes, interleaved, and an unreadable file: results stay in the files'
    order, each file's codes are its own (as encoded alone), and the model is called once per
    batch of up to BATCH same-sized files (20 + 3 maps: 3 calls)."""
    from armdata.commands import depth_tokens
    from armdata.models.vqvae import load_vqvae, vqvae_input

    calls = []
    chain = depth_tokens.depth_to_codes

    def counted(vqvae, inputs, kind, depth_net=None):
        calls.append((kind, tuple(inputs.shape)))
        return chain(vqvae, inputs, kind, depth_net)

    monkeypatch.setattr(depth_tokens, "depth_to_codes", counted)
    big, small = synthetic_depth_maps(20, 30, 40, seed=1), synthetic_depth_maps(3, 24, 24, seed=2)
    files, maps, bigs, smalls = [], [], iter(big), iter(small)
    for k in range(23):
        image = next(smalls) if k in (0, 7, 14) else next(bigs)
        files.append(str(tmp_path / f"{k}.png"))
        Image.fromarray(image).save(files[-1])
        maps.append(image)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    files.insert(5, str(bad))
    maps.insert(5, None)
    assert run_depth_tokens("--vqvae", str(assets[1]), "--device", "cpu", "--json", *files) == 1
    out = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in out] == files and "error" in out[5]
    vq = load_vqvae(str(assets[1]))
    with torch.inference_mode():
        for r, image in zip(out, maps):
            if image is not None:
                alone = vq.encode(vqvae_input(torch.from_numpy(image)[None]))[0].tolist()
                assert r["source"] == "depth_map" and r["codes"] == alone
    assert sorted(calls) == sorted([("depth_map", (16, 30, 40)), ("depth_map", (4, 30, 40)),
                                    ("depth_map", (3, 24, 24))])
