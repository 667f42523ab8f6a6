"""Trackers on generated videos with known motion (fast moves, occlusions), 256×256, and the
hard videos (turns, scale, fingers, light drift, JPEG q80, an opaque bar) for the affine tracker.
Seeds here are distinct from the benchmark's (benchmarks/bench_tracker.py: 1000-1007)."""
from __future__ import annotations

import numpy as np
import pytest

from armdata.models.trackers import AffineParams, AffineTracker, CoTrackerTracker, LKTracker, \
    load_cotracker, template_size
from armdata.models.trackers.factory import TRACKERS, TrackerOptions, make_tracker
from armdata.testing.synthetic_video import make_hard_video, make_video
from armdata.transforms.trace import trace_error, tracking_scores

SEEDS = range(8)


def _seed_frame(video, t0):
    while video.occluded_near[t0]:   # seed on a clean view, as a user would
        t0 += 1
    return t0


@pytest.mark.parametrize("seed", SEEDS)
def test_lk_accuracy_and_visibility(seed):
    video = make_video(seed, num_frames=60)
    t0 = _seed_frame(video, 0 if seed % 2 == 0 else 30)   # odd seeds also track backwards
    xy, visible = LKTracker().track(video.frames, t0, tuple(video.xy[t0]))
    err = trace_error(xy, video.xy, video.visible)
    assert err["mean_px"] <= 1.5, err
    assert trace_error(xy, video.xy, visible)["mean_px"] <= 1.5
    assert visible.mean() >= 0.9
    assert not visible[~video.visible].all()   # the occlusion is noticed


@pytest.mark.parametrize("kwargs", [dict(patch_size=24), dict(patch_size=48),
                                    dict(width=320, height=240), dict(fast_moves=5, occlusions=0)])
def test_lk_variants(kwargs):
    video = make_video(11, num_frames=50, **kwargs)
    t0 = _seed_frame(video, 0)
    xy, visible = LKTracker().track(video.frames, t0, tuple(video.xy[t0]))
    assert trace_error(xy, video.xy, video.visible)["mean_px"] <= 1.5
    assert visible.mean() >= 0.9


def jump_scene():
    """A video whose whole view jumps 2 px and darkens at frame 20, and a localizer that answers
    the truth and records when it was asked."""
    video = make_video(2, num_frames=40)
    frames = video.frames.copy()
    frames[20:] = np.roll(frames[20:], 2, axis=(1, 2))   # everything jumps: appearance changes
    frames[20:] = (frames[20:] * 0.5).astype(np.uint8)
    truth = video.xy.copy()
    truth[20:] += 2
    calls = []

    def localizer(t):
        calls.append(t)
        return tuple(truth[t])
    return video, frames, truth, calls, localizer


def test_lk_asks_localizer_when_unsure():
    video, frames, truth, calls, localizer = jump_scene()

    xy, visible = LKTracker().track(frames, 0, tuple(truth[0]), localizer)
    assert 20 in calls                              # the jump is noticed at once
    assert len(calls) < 0.6 * len(frames)           # not asked where the tracker is sure
    seen = visible & video.visible
    assert seen.mean() >= 0.9 and not visible[~video.visible].all()
    assert np.linalg.norm(xy[seen] - truth[seen], axis=1).max() < 1.5


def test_lk_bad_input():
    video = make_video(0, num_frames=5)
    with pytest.raises(ValueError, match="outside the 256x256 image"):
        LKTracker().track(video.frames, 0, (300.0, 10.0))
    with pytest.raises(ValueError, match="seed frame 9"):
        LKTracker().track(video.frames, 9, (10.0, 10.0))
    with pytest.raises(ValueError, match="non-empty"):
        LKTracker().track(video.frames[:0], 0, (10.0, 10.0))


def test_single_frame_clip():
    video = make_video(0, num_frames=1)
    xy, visible = LKTracker().track(video.frames, 0, (100.0, 50.0))
    assert xy.tolist() == [[100.0, 50.0]] and visible.tolist() == [True]


def test_cotracker_unavailable_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="cannot load CoTracker3"):
        load_cotracker(str(tmp_path), "offline")


def test_cotracker_wrapper_halves_and_queries():
    """The wrapper's plumbing with a stand-in for the hub model that echoes its query."""
    import torch

    seen = []

    def model(video, queries):
        seen.append((video.shape, queries.tolist()))
        T = video.shape[1]
        return queries[:, None, :, 1:].expand(1, T, 1, 2), torch.ones(1, T, 1, dtype=torch.bool)

    frames = make_video(1, num_frames=6).frames
    xy, visible = CoTrackerTracker(model, None, torch.device("cpu")).track(frames, 2, (5.0, 7.0))
    assert [s[0][1] for s in seen] == [4, 3]          # forwards 2..5, backwards 2..0
    assert seen[0][1] == [[[0.0, 5.0, 7.0]]] and tuple(seen[0][0][2:]) == (3, 256, 256)
    assert xy.tolist() == [[5.0, 7.0]] * 6 and visible.all()


# A local "clone" of co-tracker whose hub entry points return a model that echoes its query: the
# point stays where it was seeded, always visible.
ECHO_HUBCONF = """
import torch


class Echo(torch.nn.Module):
    def forward(self, video, queries):
        T = video.shape[1]
        return queries[:, None, :, 1:].expand(1, T, 1, 2), torch.ones(1, T, 1)


def cotracker3_offline(**kwargs):
    return Echo()


def cotracker3_online(**kwargs):
    return Echo()
"""


def write_echo_cotracker(directory):
    directory.mkdir()
    (directory / "hubconf.py").write_text(ECHO_HUBCONF)
    return directory


def test_make_tracker_by_name(tmp_path):
    assert TRACKERS == ("affine", "lk", "cotracker3")
    assert type(make_tracker("affine")) is AffineTracker
    assert type(make_tracker("lk")) is LKTracker
    with pytest.raises(ValueError, match=r"tracker must be one of .*'affine'.* got 'klt'"):
        make_tracker("klt")
    with pytest.raises(ValueError, match="--trust-cotracker-code"):    # no GitHub code unasked
        make_tracker("cotracker3")
    repo = write_echo_cotracker(tmp_path / "co-tracker")
    import torch

    tracker = make_tracker("cotracker3", TrackerOptions(str(repo), cotracker_offline_max_frames=4),
                           torch.device("cpu"))
    assert type(tracker) is CoTrackerTracker and tracker.offline_max_frames == 4
    xy, visible = tracker.track(make_video(1, num_frames=6).frames, 2, (5.0, 7.0))
    assert xy.tolist() == [[5.0, 7.0]] * 6 and visible.all()


# --- the affine tracker (default) ------------------------------------------------------------------

def _hard(seed, frames, tracker, reseed=None):
    video = make_hard_video(seed, num_frames=frames)
    assert (~video.visible).sum() >= 3            # the bar covers the point for a few frames
    xy, visible = tracker.track(video.frames, 0, tuple(video.xy[0]),
                                None if reseed is None else reseed(video))
    return video, xy, visible, tracking_scores(xy, visible, video.xy, video.visible)


@pytest.mark.parametrize("seed", [7001, 7002])
def test_affine_hard_videos_meet_the_criteria(seed):
    """From one point on frame 0: ≥ 90 % of truly visible frames within 4 px, ≥ 80 % of covered
    frames reported hidden, through turns, scale, fingers, light, JPEG and an occlusion."""
    _, _, _, scores = _hard(seed, 40, AffineTracker())
    assert scores["within"] >= 0.9 and scores["hidden"] >= 0.8, scores
    assert scores["max_px"] <= 4.0


def test_lk_fails_the_hard_videos():
    """The reason for the affine tracker: the same videos lose `lk` (so the criteria bite)."""
    scores = [_hard(seed, 40, LKTracker())[3]["within"] for seed in (7001, 7002, 7003)]
    assert min(scores) < 0.9, scores


@pytest.mark.slow
def test_affine_hard_video_sweep():
    rows = [_hard(seed, 60, AffineTracker())[3] for seed in range(7100, 7112)]
    assert np.mean([r["within"] for r in rows]) >= 0.9
    assert np.mean([r["hidden"] for r in rows]) >= 0.8
    assert min(r["within"] for r in rows) >= 0.75, rows


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_affine_on_plain_videos(seed):
    video = make_video(seed, num_frames=60)
    t0 = _seed_frame(video, 0 if seed % 2 == 0 else 30)
    xy, visible = AffineTracker().track(video.frames, t0, tuple(video.xy[t0]))
    scores = tracking_scores(xy, visible, video.xy, video.visible)
    assert scores["within"] >= 0.9 and scores["mean_px"] <= 1.0, scores
    assert not visible[~video.visible].all()


def test_affine_asks_localizer_only_when_unsure():
    calls = []

    def localizer(video):
        def locate(t):
            calls.append(t)
            return tuple(video.xy[t])
        return locate

    video, xy, visible, scores = _hard(7004, 60, AffineTracker(), localizer)
    assert calls and len(calls) <= 0.15 * len(video.frames)
    assert set(np.flatnonzero(~video.visible)) <= set(calls) | set(np.flatnonzero(~visible))
    assert scores["within"] >= 0.9 and scores["hidden"] >= 0.8, scores


@pytest.mark.parametrize("seed", [7005, 7021, 7022])
def test_affine_taken_back_after_a_cover_is_confirmed_by_the_localizer(seed):
    """On these videos the wide search after the cover once aligned the textured bar (60+ px
    off, reported visible); with a localizer, a take-back is now confirmed by it first."""
    def localizer(video):
        return lambda t: tuple(video.xy[t])

    _, _, _, scores = _hard(seed, 60, AffineTracker(), localizer)
    assert scores["max_px"] <= 4.0 and scores["hidden"] >= 0.75, scores


def test_affine_sudden_change_asks_and_follows_the_localizer():
    video, frames, truth, calls, localizer = jump_scene()

    xy, visible = AffineTracker().track(frames, 0, tuple(truth[0]), localizer)
    assert len(calls) < 0.3 * len(frames)
    seen = visible & video.visible
    assert seen[video.visible].mean() >= 0.9 and not visible[~video.visible].all()
    assert np.linalg.norm(xy[seen] - truth[seen], axis=1).max() < 1.5


def test_affine_template_size_follows_the_image():
    assert [template_size(shape) for shape in ((128, 128), (256, 256), (256, 320), (480, 640),
                                               (64, 96))] == [15, 21, 21, 41, 15]
    assert AffineParams().size == 0   # 0: chosen per clip


def test_affine_bad_input_and_single_frame():
    video = make_video(0, num_frames=5)
    with pytest.raises(ValueError, match="outside the 256x256 image"):
        AffineTracker().track(video.frames, 0, (300.0, 10.0))
    with pytest.raises(ValueError, match="seed frame 9"):
        AffineTracker().track(video.frames, 9, (10.0, 10.0))
    xy, visible = AffineTracker().track(video.frames[:1], 0, (100.0, 50.0))
    assert xy.tolist() == [[100.0, 50.0]] and visible.tolist() == [True]
