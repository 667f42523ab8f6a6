"""Pinhole camera math (OpenCV convention: camera x right, y down, z forward; pixel centres at
integer coordinates). The one implementation of world → pixel projection in the project."""
from __future__ import annotations

import numpy as np


def intrinsics_from_fov(width: int, height: int, horizontal_fov_deg: float) -> np.ndarray:
    """(3, 3) K for square pixels and the principal point at the image centre."""
    f = 0.5 * width / np.tan(np.deg2rad(horizontal_fov_deg) / 2)
    return np.array([[f, 0.0, (width - 1) / 2],
                     [0.0, f, (height - 1) / 2],
                     [0.0, 0.0, 1.0]], dtype=np.float64)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])
            ) -> np.ndarray:
    """(4, 4) world→camera transform of a camera at `eye` looking at `target`, with the image's
    up direction as close to world `up` as possible."""
    eye = np.asarray(eye, np.float64)
    forward = np.asarray(target, np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    norm = np.linalg.norm(right)
    if norm < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to the up vector")
    right /= norm
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])   # rows: camera axes in world coordinates
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = -rotation @ eye
    return transform


def world_to_camera(T_cam_world: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """(N, 3) world points → (N, 3) camera-frame points (z: depth along the optical axis)."""
    T = np.asarray(T_cam_world, np.float64)
    return np.asarray(xyz, np.float64) @ T[:3, :3].T + T[:3, 3]


def project_points(K: np.ndarray, T_cam_world: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """(N, 3) world points → (N, 2) pixel coordinates (x, y). Points at or behind the camera
    (depth <= 0) have no image position and come back as NaN."""
    xyz = np.asarray(xyz, np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"project_points: xyz must have shape (N, 3), got {xyz.shape}")
    cam = world_to_camera(T_cam_world, xyz)
    z = cam[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        pix = (cam @ np.asarray(K, np.float64).T)[:, :2] / z
    pix[(z <= 0)[:, 0]] = np.nan
    return pix


def pixel_rays(K: np.ndarray, T_cam_world: np.ndarray, height: int, width: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre (3,) and world-frame ray directions (H, W, 3) through every pixel centre,
    scaled so that a point `centre + t * ray` lies at camera depth `t`."""
    T = np.asarray(T_cam_world, np.float64)
    rotation = T[:3, :3]
    centre = -rotation.T @ T[:3, 3]
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pix = np.stack([u, v, np.ones_like(u)], axis=-1)
    rays_cam = pix @ np.linalg.inv(np.asarray(K, np.float64)).T   # z component is 1
    return centre, rays_cam @ rotation
