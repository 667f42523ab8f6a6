"""`armdata view`: the site's data (overview counts, histograms, reasoning tags, frames written as
their own bytes, decoded depth) and, in headless Chromium, the pages themselves."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.viewer.browser import Browser, find_chromium
from tests.conftest import armdata, read_rows
from tests.viewer.view_data import H, W, write_view_dataset
from armdata.transforms.plan import compose_reasoning
from armdata.viewer.dataset import overview
from armdata.viewer.episode import plan_position, slug, split_reasoning

EPISODE = "view_test/train/0"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_view_dataset(tmp_path_factory.mktemp("view") / "out")


@pytest.fixture(scope="module")
def site(dataset: Path, tiny_vqvae: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    assert armdata("view", dataset, "--out", out, "--episodes", "2", "--vqvae", tiny_vqvae) == 0
    return out


def page_data(page: Path) -> dict:
    text = page.read_text()
    return json.loads(re.search(r"const DATA = (.*);</script>", text)[1])


def test_split_reasoning_inverts_compose() -> None:
    fields = {"TASK": "put the cup away", "PLAN": "1. reach 2. grasp",
              "SUBTASK REASONING": "the MOVE: word inside free text", "SUBTASK": "reach",
              "MOVE": "move left", "GRIPPER POSITION": "[1, 2, 3, 4]"}
    assert split_reasoning(compose_reasoning(fields)) == [[k, v] for k, v in fields.items()]
    assert split_reasoning(None) == [] and split_reasoning("TASK: x") == [["TASK", "x"]]


def test_plan_position_and_slug() -> None:
    assert plan_position(["a", "b", "c"], ["b", "c"]) == 1
    assert plan_position(["a", "b", "c"], ["x"]) is None and plan_position(None, ["a"]) is None
    assert slug("a/b") != slug("a_b") and "/" not in slug("a/b")


def test_overview_counts_episodes_and_histograms(dataset: Path) -> None:
    summary, rejections = overview(dataset)
    assert summary["counts"]["episodes_in"] == 4 and len(rejections) == 2
    by_id = {e["id"]: e for e in summary["episodes"]}
    assert by_id[EPISODE]["length"] == 8 and by_id[EPISODE]["rejected_steps"] == 1
    assert by_id[EPISODE]["visible_share"] == pytest.approx(6 / 8)
    assert by_id["view_test/train/3"]["length"] == 0
    assert by_id["view_test/train/3"]["rejected"] == "validate: no instruction"
    raw = summary["action_histograms"]["action"]
    assert len(raw) == 7 and sum(raw[0]["y"]) == 24
    assert raw[6]["marks"] == {"q01": pytest.approx(-0.9), "q99": pytest.approx(0.9)}
    assert summary["action_histograms"]["action_normalized"][0]["marks"] == {"q01": -1, "q99": 1}
    assert ["localizer asked on", "3/24 frames (12.5%)"] in summary["derived"]
    assert [g["stage"] for g in summary["rejections"]] == ["validate", "trace"]


def test_site_pages_frames_and_depth(dataset: Path, site: Path) -> None:
    pages = sorted(p.name for p in (site / "episodes").glob("*.html"))
    assert pages == sorted(f"{slug(f'view_test/train/{k}')}.html" for k in (0, 1))
    assert "http" not in (site / "index.html").read_text().split("const DATA")[0]   # no CDN
    data = page_data(site / "episodes" / f"{slug(EPISODE)}.html")
    row = next(r for r in read_rows(dataset) if r["episode_id"] == EPISODE and r["step"] == 3)
    step = data["steps"][3]
    frame = site / "episodes" / step["image"]
    assert frame.suffix == ".jpg" and frame.read_bytes() == row["image"]["bytes"]  # no re-encode
    assert step["trace"] == row["trace"] and step["objects"] == [["cup", [10, 20, 40, 50]]]
    assert step["plan_index"] == 1 and data["plan"] == json.loads(
        read_rows(dataset)[0]["plan"])
    assert dict(step["tags"])["MOVE"] == row["motion"]
    depth = Image.open(site / "episodes" / step["depth"])
    assert data["depth_decoded"] and depth.mode == "RGB" and depth.size == (320, 320)
    assert data["rejections"][0]["reason"] == "frame undecodable"


def test_view_user_errors(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert armdata("view", dataset, "--out", tmp_path, "--episode", "nope") == 2
    assert "episode 'nope' has no kept rows" in capsys.readouterr().err
    assert armdata("view", tmp_path, "--out", tmp_path / "x") == 2
    assert "no manifest.json" in capsys.readouterr().err


@pytest.mark.slow
def test_overview_of_1000_episodes_under_10s(tmp_path: Path) -> None:
    dataset = write_view_dataset(tmp_path / "out", episodes=1000, steps=30)
    start = time.perf_counter()
    assert armdata("view", dataset, "--out", tmp_path / "site", "--episodes", "0") == 0
    elapsed = time.perf_counter() - start
    print(f"overview of 1000 episodes: {elapsed:.2f}s")
    assert elapsed < 10


def magenta(pixels: np.ndarray) -> bool:
    r, g, b = (pixels[..., k].astype(int) for k in range(3))
    return bool(((r > 200) & (g < 90) & (b > 200)).any())


@pytest.mark.interop
def test_pages_in_headless_chromium(dataset: Path, site: Path) -> None:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium binary on PATH (apt-get install chromium)")
    browser = Browser(binary)
    try:
        browser.open((site / "index.html").as_uri())
        assert browser.evaluate("document.querySelectorAll('#episodes tbody tr').length") == 4
        assert browser.evaluate("document.querySelectorAll('.uplot').length") == 15
        page = site / "episodes" / f"{slug(EPISODE)}.html"
        browser.open(page.as_uri())
        assert browser.errors == []
        shot = browser.screenshot()
        box = browser.evaluate("(r => [r.left, r.top, r.width, r.height])"
                               "(document.getElementById('frame').getBoundingClientRect())")
        left, top, width, height = (round(v) for v in box)
        area = shot[top:top + height, left:left + width]
        assert area.std() > 10                                         # not blank
        scale = width / W
        trace = next(r for r in read_rows(dataset)
                     if r["episode_id"] == EPISODE and r["step"] == 0)["trace"]
        for x, y in (trace[1], trace[-1]):
            px, py = left + x * W / 256 * scale, top + y * H / 256 * scale
            assert magenta(shot[round(py) - 2:round(py) + 3, round(px) - 2:round(px) + 3]), (x, y)
        assert not magenta(shot[top + height - 6:top + height, left:left + 20])
        text = browser.evaluate("(s => { s.value = 5; s.dispatchEvent(new Event('input'));"
                                " return document.getElementById('reasoning').innerText; })"
                                "(document.getElementById('slider'))")
        assert "step 5 needs the cup" in text and "move down" in text
        assert "step 4 needs" not in text
        assert browser.evaluate("document.getElementById('frame').src").endswith("frame_0005.jpg")
        assert browser.errors == []
    finally:
        browser.close()


def test_rerun_recording(dataset: Path, tmp_path: Path) -> None:
    pytest.importorskip("rerun", reason="rerun-sdk not installed (pip install 'armdata[view]')")
    assert armdata("view", dataset, "--out", tmp_path, "--episode", EPISODE, "--rerun") == 0
    path = tmp_path / "episodes" / f"{slug(EPISODE)}.rrd"
    assert path.stat().st_size > 0
    # reading it back needs a recent rerun-sdk (>= 0.24 needs pyarrow >= 18; the minimum
    # versions' check has pyarrow 16, so rerun-sdk 0.23)
    RrdReader = pytest.importorskip("rerun.chunk", reason="this rerun-sdk cannot read .rrd "
                                                          "files back").RrdReader
    reader = RrdReader(path)
    assert [r.recording_id for r in reader.recordings()] == [EPISODE]
    summary = str(reader.store().summary())
    for entity in ("/camera/image", "/camera/trace", "/reasoning", "/action/0"):
        assert re.search(rf"{entity} rows=8\b", summary), (entity, summary)
    assert page_data(tmp_path / "episodes" / f"{slug(EPISODE)}.html")["rerun"] == path.name
