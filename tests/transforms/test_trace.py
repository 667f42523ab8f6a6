"""Trace math (SPEC §3) and the trace stage on generated episodes."""
from __future__ import annotations

import argparse
import json
import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from armdata.schemas.config import ArmConfig, CameraConfig, ConfigError, load_config, parse_config
from armdata.testing.synthetic import gripper_pixels, render_episode
from armdata.schemas.episode import Episode, Step, encode_jpeg
from armdata.schemas.output import episode_table
from tests.conftest import REPO
from armdata.testing.synthetic_video import make_hard_video, make_video, video_episode
from armdata.schemas.columns import normalize_point
from armdata.transforms.trace import TraceStage, add_build_arguments, episode_traces, \
    stage_from_args, trace_error, trace_indices, tracking_scores


# --- subsample rule ---------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=60), st.data())
def test_trace_indices_properties(valid, data):
    valid_steps = [i for i, v in enumerate(valid) if v]
    i = data.draw(st.integers(0, len(valid) - 1))
    picked = trace_indices(valid_steps, i)
    future = [j for j in valid_steps if j >= i]
    if future:
        assert 1 <= len(picked) <= 5
        assert picked == sorted(set(picked)) and set(picked) <= set(future)
        assert picked[0] == future[0] and picked[-1] == future[-1]   # starts now, ends at the end
        if len(future) <= 5:
            assert picked == future
        else:
            assert len(picked) == 5
    elif any(j < i for j in valid_steps):
        assert picked == [max(j for j in valid_steps if j < i)]      # fallback: last valid before
    else:
        assert picked == []


def test_trace_indices_linspace_example():
    # 10 future points: linspace(0, 9, 5) = 0, 2.25, 4.5, 6.75, 9 → 0, 2, 4, 6, 9
    assert trace_indices(list(range(3, 13)), 3) == [3, 5, 7, 9, 12]
    assert trace_indices([0, 1, 2], 5) == [2]


# --- normalization ----------------------------------------------------------------------------

def test_normalize_identity_for_256_images():
    for x in (0, 17, 128, 255):
        assert normalize_point(x, x, 256, 256) == [x, x]


@pytest.mark.parametrize("x,y,w,h,expected", [
    (160, 128, 320, 256, [128, 128]),     # fractal: 320 wide
    (319, 255, 320, 256, [255, 255]),     # round(255.2) and the edge
    (639.0, 479.0, 640, 480, [255, 255]),  # min(255, 256 * 639 / 640 = 255.6 → 256)
    (106.5, 85.5, 213, 171, [128, 128]),  # bc_z 213x171, half-way
    (10.0, 3.0, 64, 64, [40, 12]),
    (-0.4, -0.2, 64, 64, [0, 0]),          # half a pixel outside rounds to 0, never negative
])
def test_normalize_non_256(x, y, w, h, expected):
    assert normalize_point(x, y, w, h) == expected


def test_episode_traces_uses_visible_only_and_none_without_any():
    xy = np.array([[0, 0], [64, 64], [128, 0], [200, 100]], float)
    traces = episode_traces(xy, np.array([False, True, False, True]), 256, 256)
    assert traces == [[[64, 64], [200, 100]], [[64, 64], [200, 100]], [[200, 100]], [[200, 100]]]
    assert episode_traces(xy, np.zeros(4, bool), 256, 256) is None


def test_trace_error():
    gt = np.array([[0, 0], [10, 10], [20, 20]], float)
    est = np.array([[3, 4], [10, 10], [np.nan, np.nan]])
    err = trace_error(est, gt, np.array([True, True, False]))
    assert err["mean_px"] == pytest.approx(2.5) and err["max_px"] == pytest.approx(5)
    assert err["frames_measured"] == 2 and err["missing"] == 0
    assert trace_error(est, gt, np.ones(3, bool))["missing"] == 1


# --- the stage --------------------------------------------------------------------------------

CAMERA = CameraConfig("episode_metadata/camera_intrinsics", "episode_metadata/camera_extrinsics")


def _run(stage, episode):
    stage.setup()
    out, rejections = stage.process(episode)
    assert rejections == []
    return out


@pytest.mark.parametrize("tracker", ["lk", "none"])
def test_projection_stage_matches_ground_truth(tracker):
    video = make_video(3, num_frames=30)
    episode, _, _ = video_episode(video)
    stage = TraceStage(localizer="projection", tracker=tracker, camera=CAMERA)
    out = _run(pickle.loads(pickle.dumps(stage)), episode)
    xy = np.array([s.gripper_xy if s.gripper_xy is not None else (np.nan, np.nan)
                   for s in out.steps])
    visible = np.array([s.gripper_visible for s in out.steps])
    err = trace_error(xy, video.xy, video.visible & visible)
    assert err["mean_px"] < 0.5
    first = out.steps[0]
    assert 1 <= len(first.trace) <= 5 and all(0 <= v <= 255 for p in first.trace for v in p)
    assert first.arm_traces is None
    assert stage.counters["trace_steps"] == 0     # the pickled copy counted, not the original
    table = episode_table(out)
    assert table.column("trace_text")[0].as_py().startswith("[[")
    assert table.column("gripper_xy")[0].as_py() == pytest.approx(list(first.gripper_xy))


def _demo_episode(seed, index, size):
    """A demo-data episode (`armdata demo`: a small gripper that turns, opens and closes, carries
    a block, sometimes passes behind a plain bar) as the writer stores it: JPEG at quality 90,
    calibration in the metadata. Returns (episode, ground-truth pixels, ground-truth visible)."""
    ep = render_episode(seed=seed, index=index, num_steps=24, image_size=(size, size))
    T = len(ep.images)
    steps = [Step(index=t, image=encode_jpeg(ep.images[t], 90), action=ep.action[t],
                  state=ep.state[t], instruction=ep.instruction, is_first=t == 0,
                  is_last=t == T - 1, image_width=size, image_height=size) for t in range(T)]
    metadata = {"camera_intrinsics": ep.intrinsics.tolist(),
                "camera_extrinsics": ep.extrinsics.tolist()}
    return (Episode("armdata_demo", f"{seed}-{index}", T, steps, metadata),
            gripper_pixels(ep.state, ep.intrinsics, ep.extrinsics), ep.gripper_visible)


@pytest.mark.parametrize("size,seed,episodes", [(128, 0, range(16)), (256, 1, range(8))])
def test_lk_stage_on_demo_episodes(size, seed, episodes):
    """Appearance changes (turns, opening, a carried block) must not count as occlusion; a bar in
    front must; positions stay on the gripper."""
    config = load_config(str(REPO / "configs" / "armdata_demo.yaml"))
    stage = TraceStage(localizer="projection", tracker="lk", camera=config.camera,
                       arms=config.arms)
    stage.setup()
    dist, seen, truth = [], [], []
    for index in episodes:
        episode, gt, gt_visible = _demo_episode(seed, index, size)
        out = _run(stage, episode)
        xy = np.array([s.gripper_xy for s in out.steps], float)   # an estimate on every step
        dist.append(np.linalg.norm(xy - gt, axis=1)[gt_visible])
        seen.append(np.array([s.gripper_visible for s in out.steps]))
        truth.append(gt_visible)
    dist, seen, truth = np.concatenate(dist), np.concatenate(seen), np.concatenate(truth)
    assert (~truth).any()                                 # the episodes include occlusions
    assert dist.mean() <= 1.5 and dist.max() <= 4.0
    assert seen[truth].mean() >= 0.9
    assert not seen[~truth].any()


def _demo_stage_run(stage, seed, size, episodes):
    """Positions, reported visibility and the ground truth over demo episodes."""
    dist, seen, truth = [], [], []
    for index in episodes:
        episode, gt, gt_visible = _demo_episode(seed, index, size)
        out = _run(stage, episode)
        xy = np.array([s.gripper_xy for s in out.steps], float)   # an estimate on every step
        dist.append(np.linalg.norm(xy - gt, axis=1))
        seen.append(np.array([s.gripper_visible for s in out.steps]))
        truth.append(gt_visible)
    return np.concatenate(dist), np.concatenate(seen), np.concatenate(truth)


@pytest.mark.e2e   # 16 rendered episodes tracked twice: 3-4 s
def test_affine_stage_on_demo_episodes_asks_rarely_with_the_state_guide():
    """The default tracker on demo data (a 10-18 px gripper that turns, closes on a block,
    carries it, passes behind a bar, 24 steps for a whole pick-and-place): with the state guide
    the localizer is asked on under a fifth of the frames, less than half as often as without;
    covered steps stay hidden; positions (hidden steps included) stay within 2 px."""
    config = load_config(str(REPO / "configs" / "armdata_demo.yaml"))
    calls = {}
    for guide in (True, False):
        stage = TraceStage(localizer="projection", tracker="affine", camera=config.camera,
                           arms=config.arms, state_guide=guide)
        stage.setup()
        dist, seen, truth = _demo_stage_run(stage, 0, 128, range(16))
        calls[guide] = stage.counters["localizer_calls"] / stage.counters["frames"]
        assert (~truth).any() and not seen[~truth].any()
        assert seen[truth].mean() >= 0.93
        assert dist[truth].mean() <= 0.3 and dist.max() <= 2.0
        assert (stage.counters.get("state_fit_positions", 0) > 0) == guide
    assert calls[True] <= 0.2 and calls[True] < 0.6 * calls[False], calls


@pytest.mark.parametrize("tracker,most", [("affine", 0.15), ("none", 1.0)])
def test_stage_counts_localizer_calls(tracker, most):
    """The localizer is asked only where the tracker is unsure; calls and frames are counted
    (they become trace/localizer_calls and trace/frames in the manifest)."""
    video = make_hard_video(7005, num_frames=40)
    episode, _, _ = video_episode(video)
    stage = TraceStage(localizer="projection", tracker=tracker, camera=CAMERA)
    out = _run(stage, episode)
    assert stage.counters["frames"] == 40
    assert 1 <= stage.counters["localizer_calls"] <= most * 40
    if tracker == "none":   # projection sees through the bar: only the count is checked
        assert stage.counters["localizer_calls"] == 40
        return
    xy = np.array([s.gripper_xy for s in out.steps], float)
    visible = np.array([s.gripper_visible for s in out.steps])
    scores = tracking_scores(xy, visible, video.xy, video.visible)
    assert scores["within"] >= 0.9 and scores["hidden"] >= 0.8, scores


def test_tracking_scores():
    gt = np.array([[0, 0], [10, 10], [20, 20], [30, 30]], float)
    est = np.array([[3, 4], [10, 10], [20, 29], [0, 0]], float)
    scores = tracking_scores(est, np.array([True, True, True, False]), gt,
                             np.array([True, True, True, False]))
    assert scores["within"] == pytest.approx(1 / 3) and scores["hidden"] == 1.0   # 0, 5, 9 px
    assert scores["mean_px"] == pytest.approx(14 / 3) and scores["max_px"] == pytest.approx(9)
    assert tracking_scores(est, np.zeros(4, bool), gt, np.ones(4, bool))["within"] == 0.0


def test_bimanual_stage_fills_arm_traces():
    video = make_video(4, num_frames=12)
    episode, _, _ = video_episode(video)
    for step in episode.steps:   # right arm: the same path, state copied at indices 3..5
        step.state = np.r_[step.state[:3], step.state[:3], 0.0].astype(np.float32)
    arms = (ArmConfig("left", (0, 1, 2)), ArmConfig("right", (3, 4, 5)))
    stage = TraceStage(localizer="projection", tracker="none", camera=CAMERA, arms=arms)
    out = _run(stage, episode)
    step = out.steps[0]
    assert [a["arm"] for a in step.arm_traces] == ["left", "right"]
    assert step.trace == step.arm_traces[0]["trace"] == step.arm_traces[1]["trace"]
    assert json.loads(episode_table(out).column("arm_traces")[0].as_py())[1]["arm"] == "right"


def test_nothing_found_gives_null_traces_and_counts():
    video = make_video(5, num_frames=8)
    episode, _, _ = video_episode(video)
    for step in episode.steps:   # behind the camera: projection finds nothing
        step.state = np.r_[0.5, -5.0, 5.0, np.zeros(4)].astype(np.float32)
    stage = TraceStage(localizer="projection", tracker="lk", camera=CAMERA)
    out = _run(stage, episode)
    assert len(out.steps) == 8 and all(s.trace is None and s.gripper_visible is False
                                       for s in out.steps)
    assert stage.counters["trace_nothing_found"] == 1


def test_missing_calibration_is_counted_not_fatal():
    episode, _, _ = video_episode(make_video(6, num_frames=6), camera_in_metadata=False)
    stage = TraceStage(localizer="projection", tracker="lk", camera=CAMERA)
    out = _run(stage, episode)
    assert all(s.trace is None for s in out.steps)
    assert stage.counters["trace_localizer_error"] == 1


def test_manual_localizer_stage(tmp_path):
    video = make_video(7, num_frames=10)
    episode, _, _ = video_episode(video, episode_id="ep7")
    points = tmp_path / "points.json"
    points.write_text(json.dumps({"ep7": {"2": video.xy[2].tolist(), "6": video.xy[6].tolist()}}))
    out = _run(TraceStage(localizer="manual", tracker="none", manual_points=str(points)), episode)
    assert [s.gripper_visible for s in out.steps] == [i in (2, 6) for i in range(10)]
    assert out.steps[0].trace == out.steps[2].trace and len(out.steps[0].trace) == 2
    assert out.steps[9].trace == [normalize_point(*video.xy[6], 256, 256)]   # fallback


def test_stage_from_args_and_errors():
    parser = argparse.ArgumentParser()
    add_build_arguments(parser)
    config = parse_config({"name": "demo", "standardize": "identity", "image_key": "image",
                           "require_instruction": False,
                           "camera": {"intrinsics": "episode_metadata/k",
                                      "extrinsics": "episode_metadata/t"}})
    stage = stage_from_args(parser.parse_args([]), config)
    assert (stage.localizer_name, stage.tracker_name) == ("projection", "affine")
    assert stage.state_guide and stage.options()["state_guide"] is True
    off = stage_from_args(parser.parse_args(["--no-state-guide"]), config)
    assert not off.state_guide and off.options()["state_guide"] is False
    no_camera = parse_config({"name": "demo", "standardize": "identity", "image_key": "image",
                              "require_instruction": False})
    with pytest.raises(ConfigError, match="camera"):
        stage_from_args(parser.parse_args(["--localizer", "projection"]), no_camera)
    assert stage_from_args(parser.parse_args([]), no_camera).localizer_name == "pointing"
    with pytest.raises(ConfigError, match="manual-points"):
        stage_from_args(parser.parse_args(["--localizer", "manual"]), no_camera)


def test_stage_gets_its_tracker_from_the_factory(tmp_path):
    """Each --tracker name gives the factory's tracker; a learned one (CoTracker3, here a local
    stand-in clone) loads once per process for every stage with the same options."""
    from armdata.models.trackers import AffineTracker, CoTrackerTracker, LKTracker
    from tests.models.test_trackers import write_echo_cotracker

    def tracker_of(name: str, **kw):
        stage = TraceStage(localizer="projection", tracker=name, camera=CAMERA, device="cpu", **kw)
        stage.setup()
        return stage._tracker

    assert (type(tracker_of("affine")), type(tracker_of("lk")), tracker_of("none")) == (
        AffineTracker, LKTracker, None)
    repo = str(write_echo_cotracker(tmp_path / "co-tracker"))
    first = tracker_of("cotracker3", cotracker_repo=repo, cotracker_offline_max_frames=7)
    assert type(first) is CoTrackerTracker and first.offline_max_frames == 7
    assert tracker_of("cotracker3", cotracker_repo=repo, cotracker_offline_max_frames=7) is first
    assert tracker_of("cotracker3", cotracker_repo=repo).offline_max_frames == 200
