"""Localizers: answer parsing, the RANSAC projection fit, projection, manual points, pointing."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from armdata.models.camera import intrinsics_from_fov, look_at, project_points
from armdata.models.localizers import Clip, FitLocalizer, ManualLocalizer, PointingLocalizer, \
    ProjectionLocalizer, apply_projection, dlt_projection, fit_projection_ransac, \
    generate_answers, load_manual_points, parse_point, pointing_prompt
from armdata.schemas.config import ArmConfig, CameraConfig


@pytest.mark.parametrize("text,expected", [
    ('<point x="43.1" y="61.0" alt="robot gripper">robot gripper</point>', (85.7, 60.5)),
    ('<points x1="10.0" y1="20.0" x2="80" y2="90" alt="g">g</points>', (19.5, 19.5)),
    (" <point y=\"50\" x=\"25\">", None),                    # attributes out of order: not Molmo
    ("The gripper is at [120, 45].", (120.0, 45.0)),          # pixels
    ('{"point_2d": [0.5, 0.25], "label": "gripper"}', (99.5, 24.5)),   # fractions
    ("I don't see a gripper.", None),
    ("[250, 40]", None),                                       # outside a 200x100 image
])
def test_parse_point(text, expected):
    got = parse_point(text, 200, 100)
    assert got == (pytest.approx(expected) if expected else None)


def test_pointing_prompt_names_arms():
    assert pointing_prompt(ArmConfig("left"), 1) == "Point to the robot gripper."
    assert pointing_prompt(ArmConfig("left"), 2) == "Point to the left robot gripper."


def _camera(seed=0):
    rng = np.random.default_rng(seed)
    K = intrinsics_from_fov(320, 256, rng.uniform(45, 75))
    T = look_at(rng.uniform([-0.2, -1.0, 0.6], [0.2, -0.5, 1.0]), np.array([0.0, 0.0, 0.1]))
    xyz = rng.uniform([-0.3, -0.3, 0.0], [0.3, 0.3, 0.4], (40, 3))
    return K, T, xyz


@pytest.mark.parametrize("seed", range(4))
def test_ransac_fit_recovers_camera_despite_outliers(seed):
    K, T, xyz = _camera(seed)
    uv = project_points(K, T, xyz)
    rng = np.random.default_rng(seed)
    noisy = uv + rng.normal(0, 0.3, uv.shape)
    outliers = rng.choice(len(uv), 12, replace=False)          # 30% wild detections
    noisy[outliers] = rng.uniform(0, 256, (12, 2))
    P, inliers = fit_projection_ransac(xyz, noisy, threshold=3.0)
    assert P is not None
    assert not inliers[outliers].any() and inliers.sum() >= 26
    test = np.random.default_rng(99).uniform([-0.3, -0.3, 0.0], [0.3, 0.3, 0.4], (50, 3))
    assert np.abs(apply_projection(P, test) - project_points(K, T, test)).max() < 1.5


def test_dlt_exact_and_degenerate():
    K, T, xyz = _camera(1)
    uv = project_points(K, T, xyz)
    P = dlt_projection(xyz[:6], uv[:6])
    assert np.abs(apply_projection(P, xyz) - uv).max() < 1e-6
    flat = xyz.copy()
    flat[:, 2] = 0.1                                             # a plane does not pin P down
    assert dlt_projection(flat, project_points(K, T, flat)) is None
    assert fit_projection_ransac(xyz[:5], uv[:5])[0] is None


def _clip(K, T, xyz, episode_id="ep"):
    frames = np.zeros((len(xyz), 256, 320, 3), np.uint8)
    states = np.c_[xyz, np.zeros((len(xyz), 4))].astype(np.float32)
    metadata = {"k": K.tolist(), "t": T.tolist()}
    return Clip(episode_id, frames, states, list(range(10, 10 + len(xyz))), metadata)


def test_projection_localizer_inline_and_metadata():
    K, T, xyz = _camera(2)
    clip = _clip(K, T, xyz)
    expected = project_points(K, T, xyz[:5])
    for camera in (CameraConfig(K.tolist(), T.tolist()),
                   CameraConfig("episode_metadata/k", "episode_metadata/t")):
        xy, found = ProjectionLocalizer(camera).locate(clip, ArmConfig(), range(5))
        assert found.all() and np.allclose(xy, expected)
    clip.states[0, :3] = [0, 5, 0]                                # far outside the view
    xy, found = ProjectionLocalizer(camera).locate(clip, ArmConfig(), [0, 1])
    assert found.tolist() == [False, True] and np.isnan(xy[0]).all()
    with pytest.raises(ValueError, match="no 'k'"):
        ProjectionLocalizer(camera).locate(Clip("e", clip.frames, clip.states, clip.steps, {}),
                                           ArmConfig(), [0])
    with pytest.raises(ValueError, match="state has shape"):
        ProjectionLocalizer(camera).locate(clip, ArmConfig("a", (5, 6, 7)), [0])


def test_manual_points_json_csv_and_errors(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"ep": {"10": [5, 6], "right": {"11": [7, 8]}}}))
    (tmp_path / "p.csv").write_text("episode_id,step,x,y,arm\nep,10,5,6,\nep,11,7,8,right\n")
    for name in ("p.json", "p.csv"):
        points = load_manual_points(tmp_path / name)
        assert points == {("ep", None, 10): (5.0, 6.0), ("ep", "right", 11): (7.0, 8.0)}
    K, T, xyz = _camera(0)
    clip = _clip(K, T, xyz[:3])
    xy, found = ManualLocalizer(points).locate(clip, ArmConfig("right"), [0, 1, 2])
    assert found.tolist() == [True, True, False] and xy[1].tolist() == [7.0, 8.0]
    (tmp_path / "bad.csv").write_text("episode,x\n1,2\n")
    with pytest.raises(ValueError, match="missing column"):
        load_manual_points(tmp_path / "bad.csv")


def test_fit_localizer_fills_every_step_from_sparse_noisy_points():
    K, T, xyz = _camera(3)
    uv = project_points(K, T, xyz)
    rng = np.random.default_rng(0)
    points = {}
    for i in range(len(xyz)):
        noisy = uv[i] + rng.normal(0, 0.3, 2)
        if i % 5 == 0:
            noisy = rng.uniform(0, 250, 2)                        # a wrong pointing answer
        points[("ep", None, 10 + i)] = tuple(noisy)
    clip = _clip(K, T, xyz)
    fit = FitLocalizer(ManualLocalizer(points), num_frames=16, threshold=3.0)
    xy, found = fit.locate(clip, ArmConfig(), range(len(xyz)))
    inside = (uv[:, 0] > 0) & (uv[:, 0] < 319) & (uv[:, 1] > 0) & (uv[:, 1] < 255)
    err = np.linalg.norm(xy[found] - uv[found], axis=1)   # 12 inliers of 16, 0.3 px noise
    assert found[inside].all() and err.mean() < 1.0 and err.max() < 3.0
    empty = FitLocalizer(ManualLocalizer({}), num_frames=16)
    assert not empty.locate(clip, ArmConfig(), range(3))[1].any()


@pytest.fixture
def one_torch_thread():
    """Tiny matmuls on a busy 2-core machine spend their time waking threads."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_pointing_localizer_with_tiny_vlm_batches_like_single_calls(one_torch_thread):
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from armdata.testing.tiny_vlm import tiny_vlm

    model, processor = tiny_vlm("words", hidden=32)
    frames = np.random.default_rng(0).integers(0, 255, (5, 64, 80, 3), dtype=np.uint8)
    batched = generate_answers(model, processor, frames, "point to the robot gripper .", 8)
    single = [generate_answers(model, processor, frames[i:i + 1], "point to the robot gripper .",
                               8)[0] for i in range(5)]
    assert batched == single and all(isinstance(a, str) and a for a in batched)
    clip = Clip("ep", frames, np.zeros((5, 0), np.float32), list(range(5)))
    xy, found = PointingLocalizer(model, processor, batch_size=2).locate(clip, ArmConfig(),
                                                                         range(5))
    expected = [parse_point(a, 80, 64) for a in single]
    assert found.tolist() == [p is not None for p in expected]
