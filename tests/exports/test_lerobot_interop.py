"""Our LeRobot exports loaded by LeRobot's own reader (SPEC §9): `LeRobotDataset(repo_id,
root=EXPORT)` of lerobot 0.3.3 (v2.1) and 0.4.4 (v3.0), each in its own virtual environment with
its own pins (armdata.testing.consumer_env, cached under ~/.cache/armdata-interop), on a build of
the Bridge sample and on a LeRobot-sourced build: length, every frame of one episode decoded,
the stats of every feature, and each frame's action equal to our row's."""
from __future__ import annotations

import contextlib
import io
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


# (source build, LeRobot version, camera option) of each export read
EXPORTS = [(source, version, cameras) for source in ("bridge", "lerobot")
           for version, cameras in (("2.1", "--lerobot-images"), ("3.0", "--lerobot-video"),
                                    ("3.0", "--lerobot-images"))]


@pytest.fixture(scope="module")
def exports(builds: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
            ) -> dict[tuple[str, str, str], tuple[Path, dict]]:
    """Each export's folder and the summary `armdata export` printed."""
    root = tmp_path_factory.mktemp("exports")
    made = {}
    for key in EXPORTS:
        source, version, cameras = key
        out = root / "-".join(key)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert armdata("export", builds[source], "--format", "lerobot", "--lerobot-version",
                           version, cameras, "--out", out) == 0
        made[key] = out, json.loads(printed.getvalue())
    return made


@pytest.fixture(scope="module")
def read(exports: dict[tuple[str, str, str], tuple[Path, dict]],
         tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], dict]:
    """What LeRobot's own reader got from each export: one reader process per LeRobot version
    reads all of that version's exports (its start-up, lerobot and torch, is most of its cost)."""
    got = {}
    for version in sorted({v for _, v, _ in EXPORTS}):
        keys = [k for k in EXPORTS if k[1] == version]
        home = tmp_path_factory.mktemp(f"reader-v{version}")
        python = consumer_python(LEROBOT_READERS[f"v{version}"])
        env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1",
               "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": ""}
        done = subprocess.run([str(python), str(READER), str(EPISODE),
                               *(str(exports[k][0]) for k in keys)], env=env,
                              capture_output=True, text=True, timeout=300, cwd=home)
        assert done.returncode == 0, done.stderr[-3000:]
        results = [json.loads(line[len("RESULT "):]) for line in done.stdout.splitlines()
                   if line.startswith("RESULT ")]
        assert len(results) == len(keys), done.stdout[-3000:]
        got.update(zip(keys, results))
    return got


@pytest.mark.parametrize("source,version,cameras", EXPORTS)
def test_lerobot_dataset_reads_export(builds: dict[str, Path], exports, read, source: str,
                                      version: str, cameras: str) -> None:
    out, summary = exports[source, version, cameras]
    info = json.loads((out / "meta" / "info.json").read_text())
    got = read[source, version, cameras]
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
