"""Our LeRobot exports loaded by LeRobot's own reader (SPEC §9): `LeRobotDataset(repo_id,
root=EXPORT)` of lerobot 0.3.3 (v2.1) and 0.4.4 (v3.0), each in its own virtual environment with
its own pins (armdata.testing.consumer_env, cached under ~/.cache/armdata-interop), on a build of
the Bridge sample and on a LeRobot-sourced build: length, every frame of one episode decoded,
the stats of every feature, and each frame's action equal to our row's."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from armdata.schemas.episode import load_image
from armdata.schemas.output import image_bytes
from armdata.testing import lerobot_data
from armdata.testing.consumer_env import LEROBOT_READERS, consumer_python
from tests.conftest import armdata, build, read_rows
from tests.exports.test_export import lerobot_episodes

READER = Path(lerobot_data.__file__).with_name("lerobot_reader.py")
EPISODE = 1   # the episode whose every frame is decoded


@pytest.fixture(scope="module")
def builds(bridge_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lerobot_interop")
    assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output",
                 root / "bridge", "--max-episodes", 3) == 0
    source = lerobot_data.write_v30(root / "source", [6, 9, 7])
    assert build("--config", "libero_10_lerobot", "--source", source, "--output",
                 root / "lerobot") == 0
    return {"bridge": root / "bridge", "lerobot": root / "lerobot"}


def run_reader(version: str, export: Path, home: Path) -> dict:
    python = consumer_python(LEROBOT_READERS[version])
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": ""}
    done = subprocess.run([str(python), str(READER), str(export), str(EPISODE)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=home)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("source", ["bridge", "lerobot"])
@pytest.mark.parametrize("version,cameras", [("2.1", "--lerobot-images"),
                                             ("3.0", "--lerobot-video"),
                                             ("3.0", "--lerobot-images")])
def test_lerobot_dataset_reads_export(builds: dict[str, Path], source: str, version: str,
                                      cameras: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "export"
    assert armdata("export", builds[source], "--format", "lerobot", "--lerobot-version",
                   version, cameras, "--out", out) == 0
    summary = json.loads(capsys.readouterr().out)
    info = json.loads((out / "meta" / "info.json").read_text())
    got = run_reader(f"v{version}", out, tmp_path)
    assert got["codebase_version"] == f"v{version}"
    assert got["length"] == summary["frames"] and got["episodes"] == summary["episodes"]
    assert got["fps"] == info["fps"]
    assert set(got["stats"]) == set(info["features"])
    assert all({"min", "max", "mean", "std"} <= set(s) for s in got["stats"].values())

    episode_id = lerobot_episodes(out)[EPISODE]["armdata_episode_id"]
    mine = sorted((r for r in read_rows(builds[source]) if r["episode_id"] == episode_id),
                  key=lambda r: r["step"])
    assert len(got["frames"]) == len(mine)
    for frame, row in zip(got["frames"], mine):
        assert frame["task"] == row["instruction"]
        np.testing.assert_array_equal(np.float32(frame["action"]), np.float32(row["action"]))
        image = frame["cameras"]["observation.images.image"]
        assert image["shape"] == [3, row["image_height"], row["image_width"]]
        want = np.asarray(load_image(image_bytes(row["image"])).convert("RGB")).mean() / 255
        assert image["mean"] == pytest.approx(want, abs=0.02 if cameras == "--lerobot-video"
                                              else 1e-5)
