"""`armdata export`: MolmoAct's save_to_disk layout (SPEC §6) and LeRobot v2.1 / v3.0 (SPEC §9),
read back with `datasets` and with our own LeRobot reader (LeRobot's own reader:
tests/exports/test_lerobot_interop.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from armdata.commands.export import EXPORTERS
from armdata.pipeline.sources.lerobot import ReadLeRobotEpisode, plan_lerobot
from armdata.schemas.episode import load_image
from armdata.schemas.output import image_bytes
from tests.conftest import REPO, armdata, build, read_rows
from tests.commands.test_build_stages import CPU
from armdata.testing.synthetic import write_synthetic_rlds
from armdata.testing.tiny_models import make_tiny_vqvae

EPISODES = 3


@pytest.fixture(scope="module")
def built(bridge_dir: Path, tiny_depth_model: Path, tiny_vqvae: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bridge with depth and trace; episode 2 gets no gripper points, so its traces are null."""
    import tensorflow_datasets as tfds

    root = tmp_path_factory.mktemp("export")
    ds = tfds.builder_from_directory(str(bridge_dir)).as_dataset(
        split=f"train[:{EPISODES}]", read_config=tfds.ReadConfig(add_tfds_id=True),
        decoders={"steps": tfds.decode.SkipDecoding()})
    ids = ["bridge_dataset/" + ep["tfds_id"].decode() for ep in tfds.as_numpy(ds)]
    (root / "points.json").write_text(json.dumps({ids[0]: {"1": [30.0, 20.0]},
                                                  ids[1]: {"5": [40.0, 44.0]}}))
    out = root / "out"
    assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", out,
                 "--max-episodes", EPISODES, "--stages", "actions,depth,trace",
                 "--depth-model", tiny_depth_model, "--vqvae", tiny_vqvae, "--depth-batch-size", 9,
                 "--localizer", "manual", "--manual-points", root / "points.json",
                 "--tracker", "lk", *CPU) == 0
    return out


def test_dispatch_lists_formats() -> None:
    assert {"molmoact", "lerobot"} <= set(EXPORTERS)


def test_molmoact(built: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import datasets
    from PIL import Image

    out = tmp_path / "molmoact"
    assert armdata("export", built, "--format", "molmoact", "--out", out) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = {(r["instruction"], r["trace_text"] or "[]", r["action_chunk"]): r
            for r in read_rows(built)}
    without_trace = [r for r in rows.values() if r["trace_text"] is None]
    assert summary["rows"] == len(rows) and summary["skipped"] == {"no_depth": 0}
    assert summary["empty_trace"] == len(without_trace) > 0   # episode 2: "[]", as MolmoAct writes
    ds = datasets.load_from_disk(str(out))
    assert set(ds.column_names) == {"language_instruction", "depth", "trace", "processed_action",
                                    "image", "wrist_image"}
    assert isinstance(ds.features["image"], datasets.Image) and len(ds) == len(rows)
    for item in ds:
        chunk = json.loads(item["processed_action"])["chunked_action"]
        source = rows[(item["language_instruction"], item["trace"], chunk)]
        assert item["depth"] == source["depth_tokens"] and item["depth"].startswith(
            "<DEPTH_START>")
        assert isinstance(item["image"], Image.Image) and item["wrist_image"] is None
        assert item["image"].size == (source["image_width"], source["image_height"])
    assert (out / "dataset_statistics.json").read_bytes() == \
        (built / "dataset_statistics.json").read_bytes()
    assert armdata("export", built, "--format", "molmoact", "--out", out) == 2   # not empty


def test_molmoact_needs_depth_and_trace(bridge_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    plain = tmp_path / "plain"
    assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", plain,
                 "--max-episodes", 1) == 0
    assert armdata("export", plain, "--format", "molmoact", "--out", tmp_path / "m") == 2
    assert "depth and trace" in capsys.readouterr().err


# --- a bimanual build: both arms' traces in MolmoAct's own form ------------------------------------

BI_STEPS, BI_SIZE = 8, 32          # 32 px: x * 256 / 32 is an integer, so no rounding ties
ARMS = ("left", "right")


@pytest.fixture(scope="module")
def bimanual(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Synthetic episodes built with two arms and hand-given points: in episode 0 both arms are
    found (right at 7 steps, so its traces are subsampled), in episode 1 only the left, in
    episode 2 neither. Returns the build and the points `{episode_id: {arm: {step: (x, y)}}}`."""
    import tensorflow_datasets as tfds
    import yaml

    root = tmp_path_factory.mktemp("bimanual")
    src = write_synthetic_rlds(root / "src", num_episodes=3, num_steps=BI_STEPS,
                               image_size=(BI_SIZE, BI_SIZE), seed=2, name="bimanual_demo")
    config = yaml.safe_load((REPO / "configs" / "armdata_demo.yaml").read_text())
    config.update(name="bimanual_demo", arms=[{"name": "left", "xyz_indices": [0, 1, 2]},
                                               {"name": "right", "xyz_indices": [3, 4, 5]}])
    (root / "bimanual_demo.yaml").write_text(yaml.safe_dump(config))
    ds = tfds.builder_from_directory(str(src)).as_dataset(
        split="train", read_config=tfds.ReadConfig(add_tfds_id=True),
        decoders={"steps": tfds.decode.SkipDecoding()})
    ids = sorted("bimanual_demo/" + ep["tfds_id"].decode() for ep in tfds.as_numpy(ds))
    points = {ids[0]: {"left": {1: (4, 5), 4: (20, 10)},
                       "right": {0: (30, 2), 1: (29, 3), 2: (8, 8), 3: (9, 9), 5: (1, 1),
                                 6: (2, 31), 7: (3, 30)}},
              ids[1]: {"left": {2: (16, 16)}}}
    (root / "points.json").write_text(json.dumps(
        {ep: {arm: {str(t): xy for t, xy in steps.items()} for arm, steps in arms.items()}
         for ep, arms in points.items()}))
    out = root / "out"
    assert build("--config", root / "bimanual_demo.yaml", "--source", src, "--output", out,
                 "--stages", "actions,depth,trace", "--depth-source", "sensor",
                 "--vqvae", make_tiny_vqvae(root / "vq.pt"), "--localizer", "manual",
                 "--manual-points", root / "points.json", "--tracker", "none", *CPU) == 0
    return out, points


def spec_trace(points: dict[int, tuple[int, int]], i: int) -> list[list[int]]:
    """SPEC §3: the found points from step i to the end, 5 by linspace when more, else the last
    one before i, else none; scaled by min(255, round(v * 256 / size))."""
    ahead = [points[t] for t in range(i, BI_STEPS) if t in points]
    if len(ahead) > 5:
        ahead = [ahead[k] for k in np.linspace(0, len(ahead) - 1, 5).astype(int)]
    if not ahead:
        ahead = [points[t] for t in range(i) if t in points][-1:]
    return [[min(255, round(v * 256 / BI_SIZE)) for v in xy] for xy in ahead]


def molmoact_fine_tune_samples(out: Path) -> list[dict]:
    """MolmoAct's fine-tune loader as SPEC §6/§8 describe it: `load_from_disk`, the trace is a
    Python list literal (parsed with `ast.literal_eval`, "[]" when there is none), the
    reasoning answer has a left and a right trace sentence, images are `image` then
    `wrist_image`. Bimanual: each sentence takes its arm's `trace_<arm>` column."""
    import ast

    import datasets

    samples = []
    for item in datasets.load_from_disk(str(out)):
        traces = {arm: ast.literal_eval(item[f"trace_{arm}"]) for arm in ARMS}
        for arm, trace in traces.items():
            assert isinstance(trace, list) and item[f"trace_{arm}"] == str(trace)
            assert all(len(p) == 2 and all(isinstance(v, int) and 0 <= v <= 255 for v in p)
                       for p in trace)
        action = json.loads(item["processed_action"])["chunked_action"]
        answer = (f"The depth map of the image is {item['depth']}. "
                  f"The trajectory of the left end effector is {item['trace_left']}. "
                  f"The trajectory of the right end effector is {item['trace_right']}. "
                  f"Based on this information, the action that the robot should take is "
                  f"{action}.")
        images = [item[k] for k in ("image", "wrist_image") if item[k] is not None]
        samples.append({"task": item["language_instruction"], "trace": item["trace"],
                        "traces": traces, "answer": answer, "images": images})
    return samples


def test_molmoact_bimanual_exports_both_arms(bimanual: tuple[Path, dict], tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    built, points = bimanual
    out = tmp_path / "molmoact"
    capsys.readouterr()
    assert armdata("export", built, "--format", "molmoact", "--out", out) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = read_rows(built)   # the export keeps the build's row order
    samples = molmoact_fine_tune_samples(out)
    assert len(samples) == len(rows) == 3 * BI_STEPS == summary["rows"]
    empty = dict.fromkeys(ARMS, 0)
    for row, sample in zip(rows, samples):
        assert sample["task"] == row["instruction"] and len(sample["images"]) == 2
        for arm in ARMS:
            want = spec_trace(points.get(row["episode_id"], {}).get(arm, {}), row["step"])
            assert sample["traces"][arm] == want, (row["episode_id"], row["step"], arm)
            empty[arm] += not want
        assert sample["trace"] == str(sample["traces"]["left"])   # the first arm, as the build
        assert sample["answer"].count("end effector is [") == 2
    # the right arm differs from the left wherever both were found (not one trace written twice)
    assert any(s["traces"]["left"] and s["traces"]["right"] and
               s["traces"]["left"] != s["traces"]["right"] for s in samples)
    assert empty == {"left": BI_STEPS, "right": 2 * BI_STEPS}
    assert summary["empty_trace"] == BI_STEPS and summary["empty_arm_trace"] == empty


def by_episode(built: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in sorted(read_rows(built), key=lambda r: (r["episode_id"], r["step"])):
        out.setdefault(r["episode_id"], []).append(r)
    return out


def read_back(out: Path, built: Path, video: bool) -> None:
    """Our own LeRobot reader gets every episode's actions, states, task and frames back."""
    plan = plan_lerobot(str(out), "train", None)
    reader = ReadLeRobotEpisode(plan)
    reader.setup()
    rows_of = by_episode(built)
    ids = [e["armdata_episode_id"] for e in lerobot_episodes(out)]
    assert len(plan.episodes) == len(ids) == EPISODES
    for read, episode_id in zip(plan.episodes, ids):
        steps = reader.read_episode(read)["steps"]
        rows = rows_of[episode_id]
        frames = steps["observation.images.image"]
        if video:   # decoded RGB; lossy: the right frame, within codec error
            for got, row in zip(frames, rows):
                want = np.asarray(load_image(image_bytes(row["image"])).convert("RGB"), float)
                assert np.abs(np.asarray(got, float) - want).mean() < 6
        else:
            assert [bytes(b) for b in frames] == [image_bytes(r["image"]) for r in rows]
        np.testing.assert_array_equal(steps["action"], np.array([r["action"] for r in rows],
                                                                np.float32))
        np.testing.assert_array_equal(steps["observation.state"],
                                      np.array([r["state"] for r in rows], np.float32))
        assert set(steps["task"]) == {rows[0]["instruction"]}


def lerobot_episodes(out: Path) -> list[dict]:
    if (out / "meta" / "episodes.jsonl").exists():
        return [json.loads(line) for line in (out / "meta" / "episodes.jsonl").open()]
    return pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()


def check_image_stats(stats: dict) -> None:
    image = stats["observation.images.image"]
    assert np.asarray(image["mean"]).shape == (3, 1, 1)
    assert 0 <= np.min(image["min"]) <= np.max(image["max"]) <= 1


def test_lerobot_v21(built: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "lerobot"
    assert armdata("export", built, "--format", "lerobot", "--lerobot-version", "2.1",
                   "--out", out) == 0
    summary = json.loads(capsys.readouterr().out)
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v2.1" and info["total_episodes"] == EPISODES
    assert info["fps"] == summary["fps"] == 5                  # Bridge's config, not a default
    assert info["features"]["observation.images.image"]["dtype"] == "image"
    assert summary["frames"] == info["total_frames"] == len(read_rows(built))
    stats = [json.loads(line) for line in (out / "meta" / "episodes_stats.jsonl").open()]
    assert [s["episode_index"] for s in stats] == list(range(EPISODES))
    for s in stats:
        assert set(s["stats"]) == set(info["features"])
        check_image_stats(s["stats"])
    # LeRobot loads the files without a features argument: each carries the datasets schema
    import datasets

    for path in sorted(out.glob("data/chunk-000/*.parquet")):
        hf = json.loads(pq.read_schema(path).metadata[b"huggingface"])["info"]["features"]
        features = datasets.Features.from_dict(hf)
        assert isinstance(features["observation.images.image"], datasets.Image)
        assert set(features) == set(info["features"])
    read_back(out, built, video=False)


def test_lerobot_v30_video(built: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "lerobot"
    assert armdata("export", built, "--format", "lerobot", "--out", out) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["version"] == "v3.0" and summary["cameras"] == "video"
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 5
    assert info["features"]["observation.images.image"]["dtype"] == "video"
    assert (out / "videos" / "observation.images.image" / "chunk-000" / "file-000.mp4").exists()
    stats = json.loads((out / "meta" / "stats.json").read_text())
    assert set(stats) == set(info["features"]) and stats["action"]["count"] == [info["total_frames"]]
    check_image_stats(stats)
    episodes = lerobot_episodes(out)
    assert [e["dataset_to_index"] - e["dataset_from_index"] for e in episodes] == \
        [e["length"] for e in episodes]
    read_back(out, built, video=True)


def test_lerobot_v30_images_and_refusals(built: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "lerobot"
    assert armdata("export", built, "--format", "lerobot", "--lerobot-images", "--out", out) == 0
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["features"]["observation.images.image"]["dtype"] == "image"
    assert info["video_path"] is None
    read_back(out, built, video=False)
    assert armdata("export", built, "--format", "lerobot", "--out", out) == 2   # not empty
    manifest = json.loads((built / "manifest.json").read_text())
    no_fps = tmp_path / "no_fps"
    no_fps.mkdir()
    for item in built.iterdir():
        (no_fps / item.name).symlink_to(item)
    (no_fps / "manifest.json").unlink()
    manifest["config"]["fps"] = None
    (no_fps / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert armdata("export", no_fps, "--format", "lerobot", "--out", tmp_path / "x") == 2
    assert "no `fps`" in capsys.readouterr().err
