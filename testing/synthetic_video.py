"""Generated videos with known motion, for tracker tests and benchmarks.

A textured gripper-like patch (a body with two fingers) moves over a textured background on a smooth
random path with a few fast moves; an occluder sometimes slides over it. The ground truth is the
body centre in pixels (pixel centres at integer coordinates) and whether an occluder covers it.
Rendering is sub-pixel (bilinear warp), so a tracker's error is measured against a continuous path.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from armdata.models.camera import intrinsics_from_fov, look_at
from armdata.schemas.episode import Episode, Step, encode_png


@dataclass
class SyntheticVideo:
    frames: np.ndarray    # (T, H, W, 3) uint8 RGB
    xy: np.ndarray        # (T, 2) float64 ground-truth point (x, y)
    visible: np.ndarray   # (T,) bool: the point is not covered by the occluder
    occluded_near: np.ndarray  # (T,) bool: an occluder is in the frame (a bad frame to seed on)


def _texture(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Smooth colour noise with detail at scale `cell` (float32 0..255)."""
    shape = (max(2, height // cell), max(2, width // cell), 3)
    coarse = rng.uniform(0, 255, shape).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, 18, (height, width, 3)).astype(np.float32)
    return np.clip(smooth + cv2.GaussianBlur(fine, (0, 0), 0.8), 0, 255)


def _gripper(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Patch image, alpha mask and the body centre inside the patch."""
    body_h = size * 2 // 3
    patch = np.zeros((size, size, 3), np.float32)
    body = _texture(rng, body_h, size, 4)
    patch[:body_h] = 0.55 * body + 0.45 * rng.uniform(60, 200, 3)
    mask = np.zeros((size, size), np.float32)
    mask[:body_h] = 1.0
    finger_w = max(3, size // 5)
    for x0 in (0, size - finger_w):   # two fingers below the body
        patch[body_h:, x0:x0 + finger_w] = rng.uniform(30, 90, 3)
        mask[body_h:, x0:x0 + finger_w] = 1.0
    return patch, mask, (size - 1) / 2, (body_h - 1) / 2


def _path(rng: np.random.Generator, num_frames: int, width: int, height: int, margin: float,
          fast_moves: int) -> np.ndarray:
    """Smooth random path (sum of sinusoids) plus `fast_moves` quick eased jumps."""
    t = np.arange(num_frames, dtype=np.float64)
    xy = np.zeros((num_frames, 2))
    for axis, extent in enumerate((width, height)):
        span = extent / 2 - margin
        centre = extent / 2 + rng.uniform(-0.2, 0.2) * span
        for _ in range(3):
            amp = rng.uniform(0.1, 0.3) * span
            xy[:, axis] += amp * np.sin(2 * np.pi * rng.uniform(0.3, 2.0) * t / num_frames
                                        + rng.uniform(0, 2 * np.pi))
        xy[:, axis] += centre
    for _ in range(fast_moves):   # a 40-70 px jump over 4-5 frames (10-17 px/frame)
        start = int(rng.integers(5, max(6, num_frames - 10)))
        duration = int(rng.integers(4, 6))
        offset = rng.normal(size=2)
        offset *= rng.uniform(40, 70) / np.linalg.norm(offset)
        ease = np.clip((t - start) / duration, 0, 1)
        ease = ease * ease * (3 - 2 * ease)
        xy += ease[:, None] * offset
    xy[:, 0] = np.clip(xy[:, 0], margin, width - 1 - margin)
    xy[:, 1] = np.clip(xy[:, 1], margin, height - 1 - margin)
    return xy


def make_video(seed: int, num_frames: int = 60, width: int = 256, height: int = 256,
               patch_size: int = 36, fast_moves: int = 2, occlusions: int = 1,
               noise: float = 2.0) -> SyntheticVideo:
    rng = np.random.default_rng(seed)
    background = _texture(rng, height, width, 16)
    patch, mask, cx, cy = _gripper(rng, patch_size)
    xy = _path(rng, num_frames, width, height, patch_size, fast_moves)
    occluder = _texture(rng, 44, 44, 6) * 0.6
    occluder_xy = np.full((num_frames, 2), np.nan)
    for _ in range(occlusions):   # slides across the gripper, covering it for ~3 frames
        start = int(rng.integers(num_frames // 4, max(num_frames // 4 + 1, num_frames - 8)))
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction)
        for k in range(7):
            if start + k < num_frames:
                occluder_xy[start + k] = xy[start + k] + direction * (k - 3) * 14
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    visible = np.ones(num_frames, bool)
    for t in range(num_frames):
        warp = np.float32([[1, 0, xy[t, 0] - cx], [0, 1, xy[t, 1] - cy]])
        p = cv2.warpAffine(patch, warp, (width, height), flags=cv2.INTER_LINEAR)
        m = cv2.warpAffine(mask, warp, (width, height), flags=cv2.INTER_LINEAR)[..., None]
        frame = background * (1 - m) + p * m
        if not np.isnan(occluder_xy[t, 0]):
            ox, oy = occluder_xy[t]
            x0, y0 = int(round(ox)) - 22, int(round(oy)) - 22
            xs, ys = slice(max(0, x0), min(width, x0 + 44)), slice(max(0, y0), min(height, y0 + 44))
            frame[ys, xs] = occluder[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
            visible[t] = not (x0 <= xy[t, 0] < x0 + 44 and y0 <= xy[t, 1] < y0 + 44)
        frame += rng.normal(0, noise, frame.shape)
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return SyntheticVideo(frames, xy, visible, ~np.isnan(occluder_xy[:, 0]))


def write_frames(video: SyntheticVideo, directory: Path) -> Path:
    """One PNG per frame, named so that sorting by name gives frame order."""
    directory.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(video.frames):
        cv2.imwrite(str(directory / f"frame_{t:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return directory


def write_video(video: SyntheticVideo, path: Path, fps: float = 10.0) -> Path:
    """A lossless-ish video file (MJPG at top quality) that cv2.VideoCapture reads back."""
    height, width = video.frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 100)
    for frame in video.frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def video_episode(video: SyntheticVideo, episode_id: str = "synthetic-0",
                  camera_in_metadata: bool = True) -> tuple[Episode, np.ndarray, np.ndarray]:
    """An Episode whose state xyz projects exactly onto the video's ground truth, through a
    camera looking down at the workspace. Returns (episode, K, T_cam_world); with
    `camera_in_metadata` the matrices are in the metadata as `camera_intrinsics/extrinsics`."""
    num_frames, height, width = video.frames.shape[:3]
    K = intrinsics_from_fov(width, height, 60.0)
    T = look_at(np.array([0.5, -0.6, 0.9]), np.array([0.5, 0.0, 0.1]))
    # back-project each ground-truth pixel at a smoothly varying depth, then to world
    depth = 1.0 + 0.1 * np.sin(np.linspace(0, np.pi, num_frames))
    rays = np.c_[video.xy, np.ones(num_frames)] @ np.linalg.inv(K).T
    cam = rays * depth[:, None]
    world = (cam - T[:3, 3]) @ T[:3, :3]
    steps = []
    for t in range(num_frames):
        state = np.r_[world[t], np.zeros(4)].astype(np.float32)
        steps.append(Step(index=t, image=encode_png(video.frames[t]),
                          action=np.zeros(7, np.float32), state=state, instruction="pick",
                          is_first=t == 0, is_last=t == num_frames - 1,
                          image_width=width, image_height=height))
    metadata = {}
    if camera_in_metadata:
        metadata = {"camera_intrinsics": K.tolist(), "camera_extrinsics": T.tolist()}
    return Episode("synthetic", episode_id, num_frames, steps, metadata), K, T


def _smooth_signal(rng: np.random.Generator, num_frames: int, amplitude: float) -> np.ndarray:
    """A smooth random curve in [-amplitude, amplitude] (sum of slow sinusoids, rescaled)."""
    t = np.arange(num_frames, dtype=np.float64) / max(1, num_frames)
    curve = sum(rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t
                                              + rng.uniform(0, 2 * np.pi)) for _ in range(3))
    peak = np.abs(curve).max()
    return amplitude * curve / peak if peak > 0 else curve


def _hard_gripper(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Body texture (size × 2·size/3) and finger colour of a gripper drawn by `_hard_sprite`."""
    body_h = size * 2 // 3
    body = 0.55 * _texture(rng, body_h, size, 4) + 0.45 * rng.uniform(60, 200, 3)
    return body.astype(np.float32), rng.uniform(30, 90, 3).astype(np.float32), body_h


def _hard_sprite(body: np.ndarray, finger: np.ndarray, opening: float
                 ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Sprite (image, alpha, body centre x, y): the body above two fingers `opening` (0..1) apart.
    The canvas is wider than the body so that open fingers fit."""
    body_h, size = body.shape[:2]
    finger_w, finger_h = max(3, size // 5), size // 3
    width = size + 2 * finger_w
    image = np.zeros((body_h + finger_h, width, 3), np.float32)
    alpha = np.zeros(image.shape[:2], np.float32)
    image[:body_h, finger_w:finger_w + size] = body
    alpha[:body_h, finger_w:finger_w + size] = 1.0
    gap = (0.15 + 0.85 * opening) * (size / 2)      # half gap between the fingers' inner edges
    centre = finger_w + (size - 1) / 2
    for inner in (centre - gap - finger_w, centre + gap):
        x0 = int(round(np.clip(inner, 0, width - finger_w)))
        image[body_h:, x0:x0 + finger_w] = finger
        alpha[body_h:, x0:x0 + finger_w] = 1.0
    return image, alpha, centre, (body_h - 1) / 2


def make_hard_video(seed: int, num_frames: int = 60, width: int = 256, height: int = 256,
                    patch_size: int = 36, rotation_deg: float = 25.0, scale: float = 0.15,
                    fast_moves: int = 1, occlusions: int = 1, occluded_frames: int = 4,
                    lighting: float = 0.3, noise: float = 3.0, jpeg_quality: int = 80
                    ) -> SyntheticVideo:
    """A harder video of the same kind: the gripper also turns in the image plane (up to
    ±`rotation_deg`), changes scale (±`scale`), opens and closes its fingers; the light drifts
    (gain ±`lighting` and a moving brightness gradient); sensor noise; every frame goes through
    JPEG at `jpeg_quality`. An opaque bar slides over the gripper and covers its point for about
    `occluded_frames` frames. The ground truth is the body centre."""
    rng = np.random.default_rng(seed)
    background = _texture(rng, height, width, 16)
    body, finger, _ = _hard_gripper(rng, patch_size)
    margin = patch_size * (1 + scale)
    xy = _path(rng, num_frames, width, height, margin, fast_moves)
    angle = _smooth_signal(rng, num_frames, rotation_deg)
    zoom = 1.0 + _smooth_signal(rng, num_frames, scale)
    opening = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1.0, 2.5) * np.arange(num_frames)
                                 / num_frames + rng.uniform(0, 2 * np.pi))
    gain = 1.0 + _smooth_signal(rng, num_frames, lighting)
    tilt = _smooth_signal(rng, num_frames, 0.5 * lighting)   # left-right brightness gradient
    bar = np.clip(_texture(rng, height, 40, 8) * 0.3 + rng.uniform(40, 120, 3), 0, 255)
    bar_x = np.full(num_frames, np.nan)
    for _ in range(occlusions):   # the bar crosses the point at a speed that covers it ~N frames
        start = int(rng.integers(num_frames // 4, max(num_frames // 4 + 1, num_frames - 10)))
        speed = bar.shape[1] / max(1, occluded_frames) * rng.choice([-1, 1])
        for k in range(-2, occluded_frames + 3):
            t = start + k
            if 0 <= t < num_frames:
                bar_x[t] = xy[t, 0] + (k - (occluded_frames - 1) / 2) * speed
    ramp = np.linspace(-1, 1, width, dtype=np.float32)[None, :, None]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    visible = np.ones(num_frames, bool)
    for t in range(num_frames):
        sprite, alpha, cx, cy = _hard_sprite(body, finger, float(opening[t]))
        warp = cv2.getRotationMatrix2D((cx, cy), float(angle[t]), float(zoom[t]))
        warp[:, 2] += xy[t] - (cx, cy)
        p = cv2.warpAffine(sprite, warp, (width, height), flags=cv2.INTER_LINEAR)
        m = cv2.warpAffine(alpha, warp, (width, height), flags=cv2.INTER_LINEAR)[..., None]
        frame = background * (1 - m) + p * m
        if not np.isnan(bar_x[t]):
            x0 = int(round(bar_x[t] - bar.shape[1] / 2))
            xs = slice(max(0, x0), min(width, x0 + bar.shape[1]))
            if xs.start < xs.stop:
                frame[:, xs] = bar[:, xs.start - x0:xs.stop - x0]
            visible[t] = not x0 - 0.5 <= xy[t, 0] <= x0 + bar.shape[1] - 0.5
        frame = frame * (gain[t] + tilt[t] * ramp) + rng.normal(0, noise, frame.shape)
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        frames[t] = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    return SyntheticVideo(frames, xy, visible, ~np.isnan(bar_x))
