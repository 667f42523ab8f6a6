"""`armdata build` end to end with the model stages (depth, trace) on tiny random-weight models:
the real Bridge sample (model depth, manual and pointing localizers), the synthetic dataset
(sensor depth, projection localizer, then `preview` and `inspect`), and a corrupt frame.

Expected values are recomputed independently where the SPEC fixes them: the depth text form,
the 8-bit depth map of sensor depth, the trace rule of SPEC §3 applied to the written gripper
positions, the projection of the state through the episode's camera.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from armdata.commands import preview
from armdata.models.camera import project_points
from armdata.testing.synthetic import write_synthetic_rlds
from armdata.schemas.output import image_bytes
from tests.conftest import SHARED, armdata, build, read_rows, rejected

GOLDEN_VQVAE = SHARED / "fixtures" / "vqvae_molmoact" / "vqvae.pt"
CPU = ["--depth-device", "cpu", "--trace-device", "cpu"]
BRIDGE_EPISODES = 3
BRIDGE_STEPS = 8           # 10 source steps; the config drops the all-zero first one and the
#                            last (relabelled motion needs the next state)
SEEDS = {0: (1, (30.0, 20.0)), 1: (5, (40.0, 44.0))}   # episode → (source step, point); 2 has none


@pytest.fixture(scope="module")
def depth_model(tiny_depth_model) -> Path:
    return tiny_depth_model


@pytest.fixture(scope="module")
def vqvae(request) -> Path:
    """The golden-layout checkpoint when ../shared has it, else a tiny one of the same layout."""
    if GOLDEN_VQVAE.exists():
        return GOLDEN_VQVAE
    return request.getfixturevalue("tiny_vqvae")


def depth_text(codes: list[int]) -> str:
    return "<DEPTH_START>" + "".join(f"<DEPTH_{c}>" for c in codes) + "<DEPTH_END>"


def trace_text(trace: list[list[int]]) -> str:
    return "[" + ", ".join(f"[{x}, {y}]" for x, y in trace) + "]"


def expected_trace(rows: list[dict], i: int) -> list[list[int]] | None:
    """SPEC §3 from the written positions of an episode's rows (sorted by step)."""
    def norm(row: dict) -> list[int]:
        x, y = row["gripper_xy"]
        return [min(255, round(x * 256 / row["image_width"])),
                min(255, round(y * 256 / row["image_height"]))]

    valid = [j for j, r in enumerate(rows) if r["gripper_visible"]]
    if not valid:
        return None
    future = [j for j in valid if j >= i]
    if len(future) > 5:
        future = [future[k] for k in np.linspace(0, len(future) - 1, 5).astype(int)]
    if not future:
        future = [max(j for j in valid if j < i)]
    return [norm(rows[j]) for j in future]


def by_episode(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["episode_id"], r["step"])):
        out.setdefault(row["episode_id"], []).append(row)
    return out


def manifest(output: Path) -> dict:
    return json.loads((output / "manifest.json").read_text())


def assert_consistent(c: dict) -> None:
    assert c["episodes_in"] == c["episodes_out"] + c["episodes_rejected"]
    assert c["steps_in"] == c["steps_out"] + c["steps_rejected"]


def assert_depth_columns(row: dict) -> np.ndarray:
    """100 codes in 0..127, their text form, and the stored 8-bit map at the frame's size."""
    codes = row["depth_codes"]
    assert len(codes) == 100 and all(0 <= c <= 127 for c in codes)
    assert row["depth_tokens"] == depth_text(codes)
    with Image.open(io.BytesIO(image_bytes(row["depth_png"]))) as png:
        assert png.mode == "L"
        assert png.size == (row["image_width"], row["image_height"])
        d8 = np.asarray(png)
    # a per-frame min-max map (the tiny random depth model's range is ~1e-7, so the +1e-8 of
    # the SPEC formula keeps its maximum a few levels below 255; sensor maps are checked exactly)
    assert d8.min() == 0 and d8.max() > 128
    return d8


def assert_trace_columns(ep_rows: list[dict]) -> None:
    for i, row in enumerate(ep_rows):
        trace = row["trace"]
        assert 1 <= len(trace) <= 5 and all(0 <= v <= 255 for p in trace for v in p)
        assert row["trace_text"] == trace_text(trace)
        assert trace == expected_trace(ep_rows, i), (row["episode_id"], row["step"])


def depth_tokens_json(files: list[Path], vqvae: Path, capsys) -> list[dict]:
    capsys.readouterr()
    assert armdata("depth-tokens", *files, "--vqvae", vqvae, "--device", "cpu", "--json") == 0
    return json.loads(capsys.readouterr().out)


# --- Bridge: model depth + manual points tracked by LK -------------------------------------------

@pytest.fixture(scope="module")
def bridge_ids(bridge_dir) -> list[str]:
    ds = tfds.builder_from_directory(str(bridge_dir)).as_dataset(
        split=f"train[:{BRIDGE_EPISODES}]", read_config=tfds.ReadConfig(add_tfds_id=True),
        decoders={"steps": tfds.decode.SkipDecoding()})
    return ["bridge_dataset/" + ep["tfds_id"].decode() for ep in tfds.as_numpy(ds)]


@pytest.fixture(scope="module")
def bridge_built(bridge_dir, bridge_ids, depth_model, vqvae, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bridge_stages")
    points = {bridge_ids[e]: {str(step): list(xy)} for e, (step, xy) in SEEDS.items()}
    (root / "points.json").write_text(json.dumps(points))
    out = root / "out"
    assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", out,
                 "--max-episodes", BRIDGE_EPISODES, "--stages", "actions,depth,trace",
                 "--depth-model", depth_model, "--vqvae", vqvae, "--store-depth",
                 "--depth-batch-size", BRIDGE_STEPS, "--localizer", "manual",
                 "--manual-points", root / "points.json", "--tracker", "lk", *CPU) == 0
    return out


def test_bridge_counts(bridge_built):
    m = manifest(bridge_built)
    assert m["stages"] == ["actions", "depth", "trace"]
    c = m["counts"]
    assert_consistent(c)
    assert c["episodes_out"] == BRIDGE_EPISODES and c["episodes_rejected"] == 0
    assert c["steps_out"] == BRIDGE_EPISODES * BRIDGE_STEPS and c["steps_rejected"] == 0
    assert rejected(bridge_built) == []
    counters = m["counters"]
    assert counters["depth/frames"] == c["steps_out"]
    assert counters["trace/trace_steps"] == c["steps_out"]
    # the episode without points: null traces, and why is in the manifest
    assert counters["trace/trace_nothing_found"] == 1


def test_bridge_depth_columns_match_depth_tokens_cli(bridge_built, vqvae, tmp_path, capsys):
    rows = read_rows(bridge_built)
    files = []
    for k, row in enumerate(rows):
        assert (row["image_width"], row["image_height"]) == (64, 64)
        assert_depth_columns(row)
        files.append(tmp_path / f"{k}.png")
        files[-1].write_bytes(image_bytes(row["depth_png"]))
    # the stage and the command tokenize the same 8-bit map: the codes must agree
    results = depth_tokens_json(files, vqvae, capsys)
    assert [r["source"] for r in results] == ["depth_map"] * len(rows)
    assert [r["codes"] for r in results] == [row["depth_codes"] for row in rows]
    assert [r["tokens"] for r in results] == [row["depth_tokens"] for row in rows]
    assert all(row["action_tokens"] for row in rows)        # the actions stage is still there


def test_bridge_traces(bridge_built, bridge_ids):
    episodes = by_episode(read_rows(bridge_built))
    assert sorted(episodes) == sorted(bridge_ids)
    for e, (seed_step, xy) in SEEDS.items():
        ep_rows = episodes[bridge_ids[e]]
        assert [r["step"] for r in ep_rows] == list(range(1, BRIDGE_STEPS + 1))
        seed = next(r for r in ep_rows if r["step"] == seed_step)
        assert seed["gripper_visible"] and seed["gripper_xy"] == list(xy)
        assert_trace_columns(ep_rows)
        for r in ep_rows:
            assert r["gripper_xy"] is not None and np.isfinite(r["gripper_xy"]).all()
    for r in episodes[bridge_ids[2]]:
        assert r["trace"] is None and r["trace_text"] is None and r["gripper_xy"] is None
        assert r["gripper_visible"] is False
        assert r["depth_codes"] is not None      # the other columns are still training data


# --- Bridge: a pointing VLM that finds nothing ---------------------------------------------------

def test_bridge_pointing_finds_nothing_gives_counted_null_traces(bridge_dir, tmp_path):
    from armdata.testing.tiny_vlm import tiny_vlm

    model, processor = tiny_vlm("words", hidden=32)
    model.save_pretrained(tmp_path / "vlm")
    processor.save_pretrained(tmp_path / "vlm")
    out = tmp_path / "out"
    assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", out,
                 "--max-episodes", "1", "--stages", "actions,trace", "--localizer", "pointing",
                 "--pointing-model", tmp_path / "vlm", "--pointing-batch-size", BRIDGE_STEPS,
                 *CPU) == 0
    m = manifest(out)
    assert_consistent(m["counts"])
    assert m["counts"]["steps_out"] == BRIDGE_STEPS and rejected(out) == []
    assert m["counters"]["trace/trace_nothing_found"] == 1
    assert m["counters"].get("trace/trace_steps_visible", 0) == 0
    for r in read_rows(out):
        assert r["trace"] is None and r["gripper_xy"] is None and r["gripper_visible"] is False


# --- synthetic: sensor depth + projection, then preview and inspect -------------------------------

SYN_EPISODES, SYN_STEPS, SYN_H, SYN_W = 8, 12, 64, 96


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return write_synthetic_rlds(tmp_path_factory.mktemp("syn"), num_episodes=SYN_EPISODES,
                                num_steps=SYN_STEPS, image_size=(SYN_H, SYN_W), seed=5)


@pytest.fixture(scope="module")
def synthetic_built(synthetic, vqvae, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("syn_out") / "out"
    assert build("--config", "armdata_demo", "--source", synthetic, "--output", out,
                 "--stages", "actions,depth,trace", "--depth-source", "sensor", "--vqvae", vqvae,
                 "--store-depth", "--depth-batch-size", "8", "--localizer", "projection",
                 *CPU) == 0
    return out


@pytest.fixture(scope="module")
def sensor_depth(synthetic) -> dict[tuple[str, int], np.ndarray]:
    """(episode_id, step) → the source's metric depth, read with tfds."""
    ds = tfds.builder_from_directory(str(synthetic)).as_dataset(
        split="train", read_config=tfds.ReadConfig(add_tfds_id=True))
    return {("armdata_demo/" + ep["tfds_id"].decode(), t): step["observation"]["depth"]
            for ep in tfds.as_numpy(ds) for t, step in enumerate(ep["steps"])}


def test_synthetic_depth_is_sensor_disparity(synthetic_built, sensor_depth, vqvae, tmp_path,
                                              capsys):
    c = manifest(synthetic_built)["counts"]
    assert_consistent(c)
    assert c["steps_out"] == SYN_EPISODES * SYN_STEPS and c["steps_rejected"] == 0
    rows = read_rows(synthetic_built)
    files = []
    for k, row in enumerate(rows):
        d8 = assert_depth_columns(row)
        depth = np.asarray(sensor_depth[(row["episode_id"], row["step"])], np.float32)
        assert depth.shape == (SYN_H, SYN_W) and (depth > 0).all()
        disp = 1.0 / depth                                   # nearer = larger, SPEC §2 min-max
        want = ((disp - disp.min()) / (disp.max() - disp.min() + 1e-8) * 255).astype(np.uint8)
        assert np.abs(d8.astype(int) - want).max() <= 1
        if k % 8 == 0:
            files.append((row, tmp_path / f"{k}.png"))
            files[-1][1].write_bytes(image_bytes(row["depth_png"]))
    results = depth_tokens_json([f for _, f in files], vqvae, capsys)
    assert [r["codes"] for r in results] == [row["depth_codes"] for row, _ in files]


def test_synthetic_gripper_follows_projection(synthetic_built):
    counters = manifest(synthetic_built)["counters"]
    assert "trace/trace_nothing_found" not in counters
    assert counters["trace/frames"] == SYN_EPISODES * SYN_STEPS   # one arm
    assert 1 <= counters["trace/localizer_calls"] <= counters["trace/frames"]
    options = manifest(synthetic_built)["stage_options"]["trace"]
    assert options["tracker"] == "affine" and options["state_guide"] is True
    errors = []
    for ep_rows in by_episode(read_rows(synthetic_built)).values():
        assert len(ep_rows) == SYN_STEPS
        assert_trace_columns(ep_rows)
        meta = json.loads(ep_rows[0]["episode_metadata"])
        K = np.reshape(meta["camera_intrinsics"], (3, 3))
        T = np.reshape(meta["camera_extrinsics"], (4, 4))
        truth = project_points(K, T, np.array([r["state"][:3] for r in ep_rows]))
        visible = [i for i, r in enumerate(ep_rows) if r["gripper_visible"]]
        assert visible
        errors += [np.linalg.norm(np.subtract(ep_rows[i]["gripper_xy"], truth[i]))
                   for i in visible]
    # on the gripper (its sprite is ~7-13 px wide at this size) and mostly exact
    assert max(errors) < 4.0 and np.median(errors) < 1.0


def test_preview_and_inspect(synthetic_built, vqvae, tmp_path, capsys):
    rows = read_rows(synthetic_built)
    episode_id = rows[0]["episode_id"]
    ep_rows = by_episode(rows)[episode_id]
    out = tmp_path / "preview"
    assert armdata("preview", synthetic_built, "--episode", episode_id, "--out", out,
                   "--vqvae", vqvae, "--height", SYN_H, "--device", "cpu") == 0
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == [f"step_{r['step']:04d}.png" for r in ep_rows]
    gap = 4
    for path, row in zip(pngs, ep_rows):
        with Image.open(path) as img:
            strip = np.asarray(img.convert("RGB"))
        # titles, then three panels at the frame's own size: RGB+trace | stored | decoded depth
        assert strip.shape == (preview.TITLE_HEIGHT + SYN_H, 3 * SYN_W + 2 * gap, 3)
        strip = strip[preview.TITLE_HEIGHT:]
        with Image.open(io.BytesIO(image_bytes(row["depth_png"]))) as png:
            stored = np.asarray(png)
        middle = strip[:, SYN_W + gap:2 * SYN_W + gap]
        assert (middle == stored[..., None]).all()
    capsys.readouterr()
    assert armdata("inspect", synthetic_built) == 0
    assert "trace: localizer asked on " in capsys.readouterr().out
    assert armdata("inspect", synthetic_built, "--verify", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["consistent"] and report["round_trip_mismatches"] == 0


# --- a corrupt frame through the model depth stage ------------------------------------------------

def test_corrupt_jpeg_with_model_stages(depth_model, vqvae, tmp_path):
    episodes, steps = 2, 3
    src = write_synthetic_rlds(tmp_path / "src", num_episodes=episodes, num_steps=steps,
                               image_size=(32, 32), seed=2, faults={1: "corrupt_jpeg"},
                               name="corrupt_demo")
    out = tmp_path / "out"
    assert build("--config", "armdata_demo", "--source", src, "--output", out,
                 "--stages", "actions,depth,trace", "--depth-model", depth_model,
                 "--vqvae", vqvae, "--depth-batch-size", steps, "--localizer", "projection",
                 "--tracker", "lk", *CPU) == 0
    m = manifest(out)
    c = m["counts"]
    assert_consistent(c)
    assert c["steps_in"] == episodes * steps and c["steps_out"] == episodes * steps - 1
    (r,) = rejected(out)
    assert r["stage"] == "validate" and r["step"] == steps // 2 and "decode" in r["reason"]
    assert m["counters"]["depth/frames"] == c["steps_out"]
    rows = read_rows(out)
    assert sorted(row["step"] for row in rows if row["episode_id"] == r["episode_id"]) == \
        [s for s in range(steps) if s != steps // 2]
    for row in rows:
        assert len(row["depth_codes"]) == 100 and row["depth_tokens"] == \
            depth_text(row["depth_codes"])
        assert row["trace"] is not None
