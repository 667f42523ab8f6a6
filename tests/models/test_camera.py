"""Pinhole camera math: OpenCV axes, projection, rays."""
from __future__ import annotations

import numpy as np
import pytest

from armdata.models.camera import intrinsics_from_fov, look_at, pixel_rays, project_points, world_to_camera

EYE = np.array([0.1, -0.5, 0.5])
TARGET = np.array([0.0, 0.05, 0.08])


def test_intrinsics_from_fov():
    K = intrinsics_from_fov(128, 96, 90.0)
    np.testing.assert_allclose(K, [[64, 0, 63.5], [0, 64, 47.5], [0, 0, 1]])


def test_look_at_axes_follow_opencv():
    T = look_at(EYE, TARGET)
    np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(T[:3, :3]), 1.0)
    np.testing.assert_allclose(world_to_camera(T, EYE[None]), 0, atol=1e-12)
    forward = world_to_camera(T, TARGET[None])[0]
    np.testing.assert_allclose(forward[:2], 0, atol=1e-12)
    assert forward[2] == pytest.approx(np.linalg.norm(TARGET - EYE))
    above, right = world_to_camera(T, np.array([TARGET + [0, 0, 0.1], TARGET + [0.1, 0, 0]]))
    assert above[1] < 0 and right[0] > 0      # y points down, x to the right


def test_look_at_rejects_vertical_view():
    with pytest.raises(ValueError):
        look_at(np.array([0.0, 0.0, 1.0]), np.zeros(3))


def test_project_points():
    K, T = intrinsics_from_fov(128, 96, 60.0), look_at(EYE, TARGET)
    behind = 2 * EYE - TARGET
    pix = project_points(K, T, np.array([TARGET, behind]))
    np.testing.assert_allclose(pix[0], [63.5, 47.5], atol=1e-9)
    assert np.isnan(pix[1]).all()
    cam = np.array([[0.1, -0.05, 2.0]])
    world = (cam - T[:3, 3]) @ T[:3, :3]   # inverse rigid transform
    np.testing.assert_allclose(project_points(K, T, world)[0],
                               [K[0, 0] * 0.05 + 63.5, -K[1, 1] * 0.025 + 47.5])
    with pytest.raises(ValueError):
        project_points(K, T, np.zeros(3))


def test_pixel_rays_back_project_to_their_pixel():
    K, T = intrinsics_from_fov(40, 30, 70.0), look_at(EYE, TARGET)
    centre, rays = pixel_rays(K, T, 30, 40)
    np.testing.assert_allclose(centre, EYE, atol=1e-12)
    depth = np.linspace(0.3, 2.0, 30 * 40).reshape(30, 40)
    points = centre + depth[..., None] * rays
    v, u = np.mgrid[0:30, 0:40]
    np.testing.assert_allclose(project_points(K, T, points.reshape(-1, 3)),
                               np.stack([u, v], -1).reshape(-1, 2), atol=1e-9)
    np.testing.assert_allclose(world_to_camera(T, points.reshape(-1, 3))[:, 2], depth.ravel())
