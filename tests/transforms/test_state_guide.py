"""State guide (models/state_guide.py): predictions from the state xyz and the whole-episode fit,
and what they do for the affine tracker."""
from __future__ import annotations

import numpy as np
import pytest

from armdata.models.camera import intrinsics_from_fov, look_at, project_points
from armdata.models.state_guide import StateGuide, refine_with_fit
from armdata.models.trackers import AffineTracker
from armdata.testing.synthetic import gripper_pixels, render_episode
from armdata.testing.synthetic_video import make_hard_video
from armdata.transforms.trace import tracking_scores

K = intrinsics_from_fov(256, 256, 60.0)
T = look_at(np.array([0.5, -0.6, 0.9]), np.array([0.5, 0.0, 0.1]))


def _path(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth 3-D end-effector path over the table and its exact pixels."""
    rng = np.random.default_rng(seed)
    s = np.linspace(0, 1, n)
    xyz = np.c_[0.35 + 0.3 * s + 0.02 * np.sin(7 * s + rng.uniform(0, 6)),
                -0.1 + 0.2 * np.sin(3 * s + rng.uniform(0, 6)),
                0.1 + 0.15 * np.sin(np.pi * s) + 0.03 * np.cos(5 * s)]
    return xyz, project_points(K, T, xyz)


def _guide(xyz: np.ndarray, uv: np.ndarray, frames) -> StateGuide:
    guide = StateGuide(xyz, 256, 256)
    for t in frames:
        guide.seen(t, uv[t])
    return guide


def test_predicts_the_projection_and_settles_only_inside_its_points():
    xyz, uv = _path(40)
    guide = _guide(xyz, uv, range(0, 30))
    point, settles = guide.predict(20)
    assert np.linalg.norm(point - uv[20]) < 1e-6 and settles
    point, settles = guide.predict(39)        # beyond the confirmed points: only where to look
    assert np.linalg.norm(point - uv[39]) < 1e-3 and not settles
    few = _guide(xyz, uv, range(0, 9))        # an affine map from few points: never settles
    assert few.predict(10) is not None and not few.predict(10)[1]


def test_refuses_what_does_not_pin_the_map_down():
    xyz, uv = _path(40)
    assert _guide(xyz, uv, range(3)).predict(5) is None                 # too few points
    stuck = StateGuide(xyz, 256, 256)                                    # locked on a static thing
    for t in range(20):
        stuck.seen(t, np.array([100.0, 80.0]))
    assert stuck.predict(25) is None
    flat = xyz.copy()
    flat[:, 2] = 0.1                                                    # a plane: no 3-D map
    assert _guide(flat, project_points(K, T, flat), range(6)).predict(8) is None
    wrong = StateGuide(xyz, 256, 256)                                   # the state is not the EE
    rng = np.random.default_rng(1)
    for t in range(20):
        wrong.seen(t, uv[t] + rng.uniform(-15, 15, 2))
    assert wrong.predict(10) is None
    gone = _guide(xyz, uv - [300, 0], range(20))                        # outside the image
    assert gone.predict(10) is None
    nan = xyz.copy()
    nan[12] = np.nan
    assert _guide(nan, uv, range(10)).predict(12) is None


def test_refine_averages_noise_and_keeps_outliers():
    xyz, uv = _path(40)
    rng = np.random.default_rng(2)
    noisy = uv + rng.normal(0, 0.2, uv.shape)
    noisy[7] += [6.0, -4.0]                                   # a bad tracker position
    visible = np.ones(40, bool)
    visible[30:33] = False
    refined, replaced = refine_with_fit(xyz, noisy, visible)
    assert not replaced[7] and refined[7].tolist() == noisy[7].tolist()
    assert not replaced[visible == 0].any() and replaced.sum() == 36
    before = np.linalg.norm(noisy - uv, axis=1)[replaced].mean()
    after = np.linalg.norm(refined - uv, axis=1)[replaced].mean()
    assert after < 0.5 * before


def test_refine_leaves_positions_the_state_does_not_explain():
    xyz, uv = _path(40)
    visible = np.ones(40, bool)
    swaying = uv + 1.5 * np.c_[np.sin(np.arange(40)), np.cos(np.arange(40) * 0.7)]
    assert refine_with_fit(xyz, swaying, visible) is None     # misfit beyond tracking noise
    assert refine_with_fit(xyz[:9], uv[:9], visible[:9]) is None   # too few points
    still = np.tile([120.0, 90.0], (40, 1))
    assert refine_with_fit(xyz, still, visible) is None       # positions that do not move


def _hard_with_state(seed: int, frames: int):
    video = make_hard_video(seed, num_frames=frames)
    depth = 1.0 + 0.15 * np.sin(np.linspace(0, 2.5, frames))   # back-projected at varying depth
    rays = np.c_[video.xy, np.ones(frames)] @ np.linalg.inv(K).T
    world = (rays * depth[:, None] - T[:3, 3]) @ T[:3, :3]
    return video, world


@pytest.mark.parametrize("seed", [7006, 7007])
def test_guide_saves_localizer_calls_and_keeps_covers_hidden(seed):
    """The same hard video with and without the guide: the guide answers where the localizer
    would have been asked, positions stay within 4 px, covered frames stay hidden."""
    video, world = _hard_with_state(seed, 60)
    asked = {False: [], True: []}
    results = {}
    for guided in (False, True):
        def locate(t, calls=asked[guided]):
            calls.append(t)
            return tuple(video.xy[t])
        guide = StateGuide(world, 256, 256) if guided else None
        xy, visible = AffineTracker().track(video.frames, 0, tuple(video.xy[0]), locate,
                                            guide=guide, precise=True)
        results[guided] = tracking_scores(xy, visible, video.xy, video.visible)
    assert len(asked[True]) <= len(asked[False]), asked
    for scores in results.values():
        assert scores["within"] >= 0.9 and scores["hidden"] >= 0.8, results


@pytest.mark.parametrize("precise", [True, False])
def test_precise_localizer_position_stands_where_asked(precise):
    """A calibrated projection's point is kept where it is asked and the gripper is seen there;
    a pointing model's is not (the tracker's own alignment is finer than its few pixels)."""
    ep = render_episode(seed=0, index=2, num_steps=24, image_size=(128, 128))
    truth = gripper_pixels(ep.state, ep.intrinsics, ep.extrinsics)
    asked = []

    def locate(t):
        asked.append(t)
        return tuple(truth[t] + [0.3, -0.2])

    xy, visible = AffineTracker().track(ep.images, 0, tuple(truth[0]), locate, precise=precise)
    seen_where_asked = [t for t in asked if visible[t]]
    assert seen_where_asked
    kept = [bool(np.allclose(xy[t], truth[t] + [0.3, -0.2], atol=1e-4)) for t in seen_where_asked]
    assert all(kept) if precise else not all(kept)
