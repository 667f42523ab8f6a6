"""LeRobot sources v2.1 (per-episode Parquet, h264 mp4 + PNG frames in the Parquet) and v3.0
(multi-episode files, AV1 mp4 with per-episode offsets): planned on the launcher with clear
errors, read into the raw episodes Standardize takes, built end to end with the bundled config."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from armdata.pipeline.sources.lerobot import (LeRobotPlan, ReadLeRobotEpisode, is_lerobot,
                                     plan_lerobot)
from armdata.pipeline.sources.rlds import SourceError
from armdata.schemas.episode import decode_rgb
from armdata.schemas.output import image_bytes
from armdata.testing import lerobot_data
from tests.conftest import armdata, build, read_rows

LENGTHS = [7, 5, 9]


@pytest.fixture(scope="module", params=["v2.1", "v3.0"])
def source(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lerobot") / f"libero_{request.param}"
    write = lerobot_data.write_v21 if request.param == "v2.1" else lerobot_data.write_v30
    return write(root, LENGTHS)


def level(image: np.ndarray) -> float:
    return float(image.astype(np.float32).mean())


def read_all(plan: LeRobotPlan) -> list[dict]:
    reader = ReadLeRobotEpisode(plan)
    reader.setup()
    return [raw for piece in plan.reads for raw in reader.process(piece)]


def test_plan_and_read_episodes_by_timestamp(source: Path) -> None:
    assert is_lerobot(str(source))
    plan = plan_lerobot(str(source), "train", None)
    assert plan.num_episodes == len(plan.episodes) == 3 and plan.fps == lerobot_data.FPS
    assert [(r.start, r.stop) for r in plan.reads] == [(0, 1), (1, 2), (2, 3)]
    assert "observation.images.image" in plan.video_keys
    raws = read_all(plan)
    assert [r["tfds_id"] for r in raws] == [f"{source.name}/episode_{e:06d}" for e in range(3)]
    for e, raw in enumerate(raws):
        steps = raw["steps"]
        n = LENGTHS[e]
        assert list(steps["frame_index"]) == list(range(n))
        assert steps["observation.images.image"].shape == (n, 64, 64, 3)
        wrist = steps["observation.images.wrist_image"]
        for t in range(n):   # every frame is the one recorded at its timestamp
            assert abs(level(steps["observation.images.image"][t])
                       - lerobot_data.frame_level(e, t)) < 4
            pixels = wrist[t] if isinstance(wrist, np.ndarray) and wrist.ndim == 4 \
                else decode_rgb(wrist[t])
            assert abs(level(pixels) - (255 - lerobot_data.frame_level(e, t))) < 4
        np.testing.assert_array_equal(steps["action"],
                                      lerobot_data.episode_arrays(e, n)["action"])
        assert set(steps["task"]) == {lerobot_data.TASKS[e % 2]}
        assert raw["episode_metadata"]["episode_index"] == e


def test_plan_errors(source: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="bad split 'val'"):
        plan_lerobot(str(source), "val", None)
    assert plan_lerobot(str(source), "train", 2).num_episodes == 2
    info = json.loads((source / "meta" / "info.json").read_text())
    broken = tmp_path / "old"
    (broken / "meta").mkdir(parents=True)
    (broken / "meta" / "info.json").write_text(json.dumps(dict(info, codebase_version="v2.0")))
    with pytest.raises(SourceError, match="v2.0.*not supported"):
        plan_lerobot(str(broken), "train", None)
    video = next((source / "videos").rglob("*.mp4"))
    video.rename(video.with_suffix(".bak"))
    try:
        with pytest.raises(SourceError, match="missing"):
            plan_lerobot(str(source), "train", None)
    finally:
        video.with_suffix(".bak").rename(video)


def test_build_from_lerobot(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "built"
    assert build("--config", "libero_10_lerobot", "--source", source, "--output", out) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["format"] == "lerobot" and manifest["source"]["fps"] == 10
    assert manifest["counts"]["steps_out"] == sum(LENGTHS)
    rows = sorted(read_rows(out), key=lambda r: (r["episode_id"], r["step"]))
    for r in rows:
        e = int(r["episode_id"].rsplit("_", 1)[1])
        assert r["instruction"] == lerobot_data.TASKS[e % 2]
        assert abs(level(decode_rgb(image_bytes(r["image"]))) -
                   lerobot_data.frame_level(e, r["step"])) < 4
        assert r["action"][6] == (1.0 if r["step"] < LENGTHS[e] // 2 else 0.0)  # 1 = open
        assert len(r["state"]) == 8
    assert armdata("build", "--config", "libero_10_lerobot", "--source", source,
                   "--output", tmp_path / "x", "--split", "test") == 2
    assert "bad split" in capsys.readouterr().err


def test_slices_are_small_elements(source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At most MAX_SLICES Beam elements of episode ranges; the DoFn carries no episode list and
    lists the episodes again on the worker."""
    import pickle

    from armdata.pipeline.sources import lerobot as lerobot_source

    monkeypatch.setattr(lerobot_source, "MAX_SLICES", 2)
    plan = plan_lerobot(str(source), "train", None)
    assert [(r.start, r.stop) for r in plan.reads] == [(0, 2), (2, 3)]
    reader = pickle.loads(pickle.dumps(ReadLeRobotEpisode(plan)))
    assert reader.plan.episodes == () and reader.plan.reads == ()
    reader.setup()
    ids = [raw["tfds_id"] for piece in plan.reads for raw in reader.process(piece)]
    assert ids == [f"{source.name}/episode_{e:06d}" for e in range(3)]
