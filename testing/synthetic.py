"""A small synthetic RLDS dataset (demo data and test fixtures), written with tfds' own writer.

Each episode is a pick-and-place seen by a fixed camera looking obliquely down at a textured table
(the plane z = 0; world x right as seen from the camera, y away from it, z up, metres): a few
coloured blocks, and a two-finger gripper drawn as a high-contrast sprite at the projected
end-effector position, fingers apart when open. The end effector moves smoothly (minimum-jerk
segments with varied speeds) to a block, closes, carries it to the side named in the instruction,
opens and retreats. Sensor depth is exact: ray–plane / ray–box intersection, the gripper at its
own depth. Some episodes have a bar that crosses in front of the gripper for a few frames.

Everything is a pure function of (seed, episode index): the same seed gives the same dataset.
"""
from __future__ import annotations

import functools
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tensorflow_datasets as tfds

from armdata.models.camera import intrinsics_from_fov, look_at, pixel_rays, project_points, world_to_camera
from armdata.schemas.episode import encode_jpeg

log = logging.getLogger(__name__)

VERSION = "1.0.0"
FAULT_KINDS = ("corrupt_jpeg", "nan_action", "inf_state", "missing_instruction", "empty", "short")

CAMERA_EYE = np.array([0.0, -0.5, 0.5])
CAMERA_TARGET = np.array([0.0, 0.05, 0.08])
CAMERA_JITTER = 0.015          # metres, per episode, so that calibration is per-episode metadata
CAMERA_FOV_DEG = 50.0
TABLE_HALF_EXTENT = 0.8        # the texture covers [-0.8, 0.8]^2 m and is mirrored beyond
TEXTURE_SIZE = 384
GRIPPER_SIZE = 0.06            # metres; 10-18 px (median 12) at 128 px images
GRIPPER_DEPTH_OFFSET = 0.02    # the sprite is the gripper's camera-facing side
OCCLUDER_PROBABILITY = 0.3
OCCLUDER_DEPTH = 0.3
BLOCK_COLOURS = {"red": (205, 35, 35), "green": (40, 165, 65), "blue": (40, 75, 210),
                 "yellow": (230, 205, 40), "purple": (145, 60, 175)}
PLACES = {"left": ((-0.18, 0.04), ("on the left", "on the left side of the table")),
          "right": ((0.18, 0.04), ("on the right", "on the right side of the table")),
          "front": ((0.0, -0.08), ("in the front", "near the front edge")),
          "back": ((0.0, 0.2), ("at the back", "at the far side of the table"))}
TEMPLATES = ("pick up the {colour} block and put it {place}",
             "move the {colour} block {place}",
             "put the {colour} cube {place}",
             "grab the {colour} block and place it {place}")


@dataclass
class SyntheticEpisode:
    instruction: str
    images: np.ndarray           # (T, H, W, 3) uint8
    wrist_images: np.ndarray     # (T, H, W, 3) uint8, a zoom around the gripper
    depth: np.ndarray            # (T, H, W) float32 camera depth in metres
    state: np.ndarray            # (T, 7) float32: ee xyz, roll pitch yaw, gripper opening (1 open)
    action: np.ndarray           # (T, 7) float32: next − current xyz/rpy, gripper 1 open
    intrinsics: np.ndarray       # (3, 3) float32
    extrinsics: np.ndarray       # (4, 4) float32 world→camera
    gripper_visible: np.ndarray  # (T,) bool: at least half of the gripper sprite is in view


@dataclass
class _Block:
    colour: str
    centre: np.ndarray   # (3,) with z = half height
    half: float
    yaw: float


@dataclass
class _Motion:
    xyz: np.ndarray       # (T, 3)
    rpy: np.ndarray       # (T, 3)
    opening: np.ndarray   # (T,)
    carried: np.ndarray   # (T,) bool: the target block moves with the gripper


def gripper_pixels(state: np.ndarray, K: np.ndarray, T_cam_world: np.ndarray) -> np.ndarray:
    """Ground-truth gripper position (T, 2) in pixels: the projected end-effector xyz."""
    return project_points(K, T_cam_world, np.asarray(state, np.float64)[:, :3])


@functools.lru_cache(maxsize=4)
def table_texture(seed: int) -> np.ndarray:
    """(S, S, 3) uint8 wood-like texture: grain along x, warped by smooth noise, plus blotches."""
    rng = np.random.default_rng([seed, 7])
    warp = _smooth_noise(rng, TEXTURE_SIZE, 6)
    blotch = _smooth_noise(rng, TEXTURE_SIZE, 24)
    y = np.linspace(0.0, 1.0, TEXTURE_SIZE)[:, None]
    grain = 0.5 + 0.5 * np.sin(2 * np.pi * (40 * y + 3.0 * warp))
    shade = 0.78 + 0.14 * grain + 0.16 * (blotch - 0.5)
    base = np.array([168.0, 122.0, 78.0])
    return np.clip(shade[..., None] * base, 0, 255).astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    coarse = rng.random((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def _min_jerk(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, 0.0, 1.0)
    return s ** 3 * (10 - 15 * s + 6 * s ** 2)


def _motion(rng: np.random.Generator, block: _Block, place_xy: np.ndarray, num_steps: int
            ) -> _Motion:
    """Pick-and-place path: minimum-jerk segments between waypoints, arcs on transport moves."""
    bx, by, _ = block.centre
    grasp_z = block.centre[2] + 0.01
    hover, carry = rng.uniform(0.11, 0.15), rng.uniform(0.14, 0.2)
    px, py = place_xy
    start = rng.uniform([-0.12, -0.02, 0.16], [0.12, 0.12, 0.26])
    retreat = np.array([px, py, 0.0]) + rng.uniform([-0.04, -0.04, 0.17], [0.04, 0.04, 0.24])
    points = np.array([start, (bx, by, hover), (bx, by, grasp_z), (bx, by, grasp_z),
                       (bx, by, carry), (px, py, carry), (px, py, grasp_z), (px, py, grasp_z),
                       retreat])
    grasp_yaw, place_yaw = rng.uniform(-0.5, 0.5, 2)
    yaws = np.array([rng.uniform(-0.6, 0.6), grasp_yaw, grasp_yaw, grasp_yaw, grasp_yaw,
                     place_yaw, place_yaw, place_yaw, rng.uniform(-0.6, 0.6)])
    durations = rng.uniform(0.7, 1.5, len(points) - 1)
    durations[[2, 6]] = 0.35                                # close / open in place
    durations[rng.choice([0, 4, 7])] *= 0.45                # one fast move
    transport = np.isin(np.arange(len(points) - 1), [0, 4, 7])
    arcs = rng.uniform(-0.03, 0.03, len(points) - 1) * transport
    bounds = np.concatenate([[0.0], np.cumsum(durations)])

    times = np.linspace(0.0, bounds[-1], num_steps) if num_steps > 1 else np.zeros(num_steps)
    seg = np.clip(np.searchsorted(bounds, times, side="right") - 1, 0, len(durations) - 1)
    s = np.clip((times - bounds[seg]) / durations[seg], 0.0, 1.0)
    w = _min_jerk(s)
    a, b = points[seg], points[seg + 1]
    xyz = a + (b - a) * w[:, None]
    # Transport moves bow sideways: offset perpendicular to the horizontal direction of travel.
    direction = (b - a)[:, :2]
    length = np.linalg.norm(direction, axis=1, keepdims=True)
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1) / np.maximum(length, 1e-9)
    xyz[:, :2] += normal * (arcs[seg] * np.sin(np.pi * s))[:, None]
    yaw = yaws[seg] + (yaws[seg + 1] - yaws[seg]) * w
    phase = rng.uniform(0, 2 * np.pi, 2)
    roll = 0.04 * np.sin(1.3 * times + phase[0])
    pitch = 0.04 * np.sin(0.9 * times + phase[1])
    close = _min_jerk((times - bounds[2]) / durations[2])
    reopen = _min_jerk((times - bounds[6]) / durations[6])
    opening = 1.0 - close + reopen
    carried = (times >= bounds[2] + durations[2] / 2) & (times < bounds[6] + durations[6] / 2)
    return _Motion(xyz, np.stack([roll, pitch, yaw], axis=1), opening, carried)


def _canonical_actions(state: np.ndarray) -> np.ndarray:
    """Action t = (state t+1 − state t) for xyz/rpy and the binarized next opening; the last step
    holds still with its own opening."""
    nxt = np.concatenate([state[1:], state[-1:]], axis=0)
    action = np.empty_like(state)
    action[:, :6] = nxt[:, :6] - state[:, :6]
    action[:, 6] = (nxt[:, 6] > 0.5).astype(state.dtype)
    return action


def _ray_box(centre: np.ndarray, rays: np.ndarray, block: _Block) -> tuple[np.ndarray, np.ndarray]:
    """Depth of the first hit of every ray with a z-rotated box (inf where missed) and a
    per-face brightness (top lit, sides darker)."""
    c, s = math.cos(-block.yaw), math.sin(-block.yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    origin = rot @ (centre - block.centre)
    dirs = rays @ rot.T
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-block.half - origin) / dirs
        t2 = (block.half - origin) / dirs
    near, far = np.minimum(t1, t2), np.maximum(t1, t2)
    t_near, t_far = near.max(axis=-1), far.min(axis=-1)
    hit = (t_near <= t_far) & (t_near > 0)
    face = near.argmax(axis=-1)
    brightness = np.array([0.78, 0.62, 1.0])[face]
    return np.where(hit, t_near, np.inf), brightness


def _gripper_sprite(centre: np.ndarray, size: float, yaw: float, opening: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixel rows, columns, grey values and body mask (palm + fingers, not the wrist link) of the
    gripper drawn around `centre`, `size` pixels wide, rotated by `yaw` in the image."""
    radius = int(math.ceil(size)) + 1
    cx, cy = int(round(centre[0])), int(round(centre[1]))
    rows, cols = np.mgrid[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1]
    dx, dy = (cols - centre[0]) / size, (rows - centre[1]) / size
    c, s = math.cos(yaw), math.sin(yaw)
    a, b = c * dx + s * dy, -s * dx + c * dy           # sprite coordinates, b points down
    palm = (np.abs(a) <= 0.5) & (b >= -0.55) & (b < -0.15)
    gap = 0.06 + 0.2 * opening
    finger = (np.abs(a) >= gap) & (np.abs(a) <= gap + 0.14) & (b >= -0.15) & (b <= 0.45)
    link = (np.abs(a) <= 0.14) & (b >= -0.95) & (b < -0.55)
    checker = (np.floor((a + 0.5) / 0.25) + np.floor((b + 0.55) / 0.2)) % 2 == 0
    grey = np.select([palm & checker, palm, finger & (b > 0.3), finger & (np.abs(b) < 0.05),
                      finger, link], [235, 20, 15, 15, 220, 115], 0)
    drawn = palm | finger | link
    return rows[drawn], cols[drawn], grey[drawn].astype(np.uint8), (palm | finger)[drawn]


class _Scene:
    """Camera, table and blocks of one episode; renders frames with the gripper at given poses."""

    def __init__(self, rng: np.random.Generator, seed: int, image_size: tuple[int, int]):
        self.height, self.width = image_size
        eye = CAMERA_EYE + rng.normal(0.0, CAMERA_JITTER, 3)
        target = CAMERA_TARGET + rng.normal(0.0, CAMERA_JITTER, 3)
        self.K = intrinsics_from_fov(self.width, self.height, CAMERA_FOV_DEG)
        self.T = look_at(eye, target)
        self.centre, self.rays = pixel_rays(self.K, self.T, self.height, self.width)
        colours = rng.choice(list(BLOCK_COLOURS), size=int(rng.integers(2, 5)), replace=False)
        self.blocks: list[_Block] = []
        for colour in colours:
            for _ in range(50):   # rejection sampling for non-overlapping blocks
                xy = rng.uniform([-0.15, -0.04], [0.15, 0.16])
                if all(np.linalg.norm(xy - b.centre[:2]) > 0.09 for b in self.blocks):
                    break
            half = rng.uniform(0.018, 0.026)
            self.blocks.append(_Block(str(colour), np.array([xy[0], xy[1], half]), half,
                                      float(rng.uniform(-0.8, 0.8))))
        self.background, self.background_depth = self._render_static(seed)

    def _render_static(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Table (ray–plane intersection, textured in world coordinates) and the blocks that do
        not move (all but the target, block 0)."""
        depth = -self.centre[2] / self.rays[..., 2]           # rays all point below the horizon
        hit = self.centre + depth[..., None] * self.rays
        scale = (TEXTURE_SIZE - 1) / (2 * TABLE_HALF_EXTENT)
        map_x = ((hit[..., 0] + TABLE_HALF_EXTENT) * scale).astype(np.float32)
        map_y = ((hit[..., 1] + TABLE_HALF_EXTENT) * scale).astype(np.float32)
        rgb = cv2.remap(table_texture(seed), map_x, map_y, cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REFLECT)
        for block in self.blocks[1:]:
            self.draw_box(rgb, depth, block)
        return rgb, depth

    def draw_box(self, rgb: np.ndarray, depth: np.ndarray, block: _Block) -> None:
        """Z-buffered box, intersected only for the pixels of its projected bounding box."""
        corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        c, s = math.cos(block.yaw), math.sin(block.yaw)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        pix = project_points(self.K, self.T, block.centre + block.half * corners @ rot.T)
        if np.isnan(pix).any():   # reaches behind the camera: intersect every pixel
            x0 = y0 = 0
            x1, y1 = self.width, self.height
        else:
            x0, y0 = np.maximum(np.floor(pix.min(axis=0)).astype(int) - 1, 0)
            x1 = min(int(np.ceil(pix[:, 0].max())) + 2, self.width)
            y1 = min(int(np.ceil(pix[:, 1].max())) + 2, self.height)
        if x0 >= x1 or y0 >= y1:
            return
        window = (slice(y0, y1), slice(x0, x1))
        t, brightness = _ray_box(self.centre, self.rays[window], block)
        hit = t < depth[window]
        colour = np.array(BLOCK_COLOURS[block.colour], np.float64)
        rgb[window][hit] = np.clip(brightness[hit, None] * colour, 0, 255).astype(np.uint8)
        depth[window][hit] = t[hit]

    def render(self, motion: _Motion, index: int, target: _Block, occluder_x: float | None,
               with_gripper: bool) -> tuple[np.ndarray, np.ndarray, bool]:
        """One frame: (rgb, depth, gripper visible)."""
        rgb, depth = self.background.copy(), self.background_depth.copy()
        # A carried block sits between the fingers: the gripper hides it, not the other way round.
        gripper_limit = depth.copy() if motion.carried[index] else depth
        self.draw_box(rgb, depth, target)
        xyz = motion.xyz[index]
        ee_depth = world_to_camera(self.T, xyz[None])[0, 2]
        pixel = project_points(self.K, self.T, xyz[None])[0]
        size = self.K[0, 0] * GRIPPER_SIZE / ee_depth
        rows, cols, grey, body = _gripper_sprite(pixel, size, float(motion.rpy[index, 2]),
                                                 float(motion.opening[index]))
        inside = (rows >= 0) & (rows < self.height) & (cols >= 0) & (cols < self.width)
        shown = np.zeros_like(inside)
        if with_gripper:
            r, c = rows[inside], cols[inside]
            sprite_depth = ee_depth - GRIPPER_DEPTH_OFFSET
            front = sprite_depth < gripper_limit[r, c]
            rgb[r[front], c[front]] = grey[inside][front, None]
            depth[r[front], c[front]] = sprite_depth
            shown[np.flatnonzero(inside)[front]] = True
        if occluder_x is not None:
            half_width = 1.1 * size
            left, right = int(round(occluder_x - half_width)), int(round(occluder_x + half_width))
            lo, hi = max(left, 0), min(right + 1, self.width)
            if lo < hi:
                ramp = np.linspace(0.7, 1.1, hi - lo)[None, :, None]
                bar = np.clip(ramp * np.array([60.0, 72.0, 95.0]), 0, 255)
                rgb[:, lo:hi] = bar.astype(np.uint8)
                depth[:, lo:hi] = OCCLUDER_DEPTH
            shown &= ~((cols >= left) & (cols <= right))
        visible = bool(shown[body].sum() >= 0.5 * body.sum())
        return rgb, depth, visible

    def wrist_view(self, rgb: np.ndarray, pixel: np.ndarray, size: float) -> np.ndarray:
        """The wrist camera stand-in: a zoom of the scene around the gripper."""
        half = int(max(8, round(2 * size)))
        half = min(half, self.width // 2, self.height // 2)
        cx = int(np.clip(np.nan_to_num(pixel[0], nan=self.width / 2), half, self.width - half))
        cy = int(np.clip(np.nan_to_num(pixel[1], nan=self.height / 2), half, self.height - half))
        crop = rgb[cy - half:cy + half, cx - half:cx + half]
        return cv2.resize(crop, (self.width, self.height), interpolation=cv2.INTER_LINEAR)


def render_episode(seed: int, index: int, num_steps: int = 24,
                   image_size: tuple[int, int] = (128, 128), with_gripper: bool = True
                   ) -> SyntheticEpisode:
    """Episode `index` of the dataset with this seed; `image_size` is (height, width).
    `with_gripper=False` renders the same frames without the gripper (ground truth for tests)."""
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    rng = np.random.default_rng([seed, index])
    scene = _Scene(rng, seed, image_size)
    target = scene.blocks[0]
    far_enough = [p for p, (xy, _) in PLACES.items()
                  if np.linalg.norm(np.array(xy) - target.centre[:2]) > 0.1]
    place = str(rng.choice(far_enough))
    place_xy, phrases = PLACES[place]
    instruction = str(rng.choice(TEMPLATES)).format(colour=target.colour,
                                                   place=str(rng.choice(phrases)))
    motion = _motion(rng, target, np.array(place_xy) + rng.uniform(-0.03, 0.03, 2), num_steps)
    occluded = np.zeros(num_steps, bool)
    offsets = np.zeros(num_steps)
    if rng.random() < OCCLUDER_PROBABILITY and num_steps >= 8:
        length = int(rng.integers(3, 5))
        first = int(rng.integers(num_steps // 4, num_steps - length))
        occluded[first:first + length] = True
        # The bar sweeps across the gripper: partly beside it at the ends, over it in the middle.
        offsets[first:first + length] = np.linspace(-1.4, 1.4, length) * rng.choice([-1, 1])

    state = np.concatenate([motion.xyz, motion.rpy, motion.opening[:, None]], axis=1)
    state = state.astype(np.float32)
    pixels = gripper_pixels(state, scene.K, scene.T)
    ee_depth = world_to_camera(scene.T, state[:, :3])[:, 2]
    sizes = scene.K[0, 0] * GRIPPER_SIZE / ee_depth
    shape = (num_steps, scene.height, scene.width)
    images, wrist = np.empty(shape + (3,), np.uint8), np.empty(shape + (3,), np.uint8)
    depth, visible = np.empty(shape, np.float32), np.empty(num_steps, bool)
    for t in range(num_steps):
        if motion.carried[t]:
            target.centre = motion.xyz[t] - np.array([0.0, 0.0, 0.01])
        elif t > 0 and motion.carried[t - 1]:
            target.centre = np.array([*motion.xyz[t - 1, :2], target.half])   # set down
        occluder_x = pixels[t, 0] + offsets[t] * sizes[t] if occluded[t] else None
        images[t], depth[t], visible[t] = scene.render(motion, t, target, occluder_x, with_gripper)
        wrist[t] = scene.wrist_view(images[t], pixels[t], sizes[t])
    return SyntheticEpisode(instruction, images, wrist, depth, state, _canonical_actions(state),
                            scene.K.astype(np.float32), scene.T.astype(np.float32), visible)


def _features(height: int, width: int) -> tfds.features.FeaturesDict:
    image = functools.partial(tfds.features.Image, shape=(height, width, 3), dtype=np.uint8,
                              encoding_format="jpeg")
    vector = functools.partial(tfds.features.Tensor, shape=(7,), dtype=np.float32)
    scalar = functools.partial(tfds.features.Scalar, dtype=np.float32)
    flag = functools.partial(tfds.features.Scalar, dtype=np.bool_)
    return tfds.features.FeaturesDict({
        "steps": tfds.features.Dataset({
            "observation": tfds.features.FeaturesDict({
                "image": image(doc="Main camera RGB."),
                "wrist_image": image(doc="Wrist camera RGB (a zoom around the gripper)."),
                "depth": tfds.features.Tensor(shape=(height, width), dtype=np.float32,
                                              doc="Sensor depth along the optical axis, metres."),
                "state": vector(doc="End-effector xyz (m, world), roll pitch yaw, gripper "
                                    "opening (1 open, 0 closed)."),
            }),
            "action": vector(doc="Next minus current xyz and rpy, gripper 1 open 0 closed."),
            "language_instruction": tfds.features.Text(),
            "is_first": flag(), "is_last": flag(), "is_terminal": flag(),
            "reward": scalar(), "discount": scalar(),
        }),
        "episode_metadata": tfds.features.FeaturesDict({
            "file_path": tfds.features.Text(),
            "episode_id": tfds.features.Scalar(dtype=np.int32),
            "camera_intrinsics": tfds.features.Tensor(shape=(3, 3), dtype=np.float32,
                                                      doc="Pinhole K, pixels."),
            "camera_extrinsics": tfds.features.Tensor(
                shape=(4, 4), dtype=np.float32,
                doc="World to camera, OpenCV axes (x right, y down, z forward)."),
        }),
    })


def _corrupt(data: bytes, rng: np.random.Generator) -> bytes:
    """A JPEG start marker followed by garbage: sniffs as JPEG, decodes nowhere."""
    return data[:2] + rng.bytes(len(data) // 2)


class SyntheticArmBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """tfds builder for the synthetic dataset; `_builder_class` names a subclass per dataset."""

    VERSION = tfds.core.Version(VERSION)
    RELEASE_NOTES = {str(VERSION): "Synthetic pick-and-place episodes."}

    # tfds prints "Downloading and preparing dataset Unknown size ..." and "... downloaded and
    # prepared" to stdout unconditionally; this builder downloads nothing.
    def _log_download_bytes(self) -> None:
        pass

    def _log_download_done(self) -> None:
        pass

    def __init__(self, *, num_episodes: int, num_steps: int, image_size: tuple[int, int],
                 seed: int, faults: dict[int, str], **kwargs):
        self._num_episodes, self._num_steps = num_episodes, num_steps
        self._image_size, self._seed, self._faults = tuple(image_size), seed, dict(faults)
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__.splitlines()[0],
            features=_features(*self._image_size),
            metadata=tfds.core.MetadataDict(seed=self._seed,
                                            faults={str(k): v for k, v in self._faults.items()}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for index in range(self._num_episodes):
            yield index, self._example(index, self._faults.get(index))

    def _example(self, index: int, fault: str | None) -> dict:
        steps = {"empty": 0, "short": 1}.get(fault, self._num_steps)
        ep = render_episode(self._seed, index, steps, self._image_size)
        images = [encode_jpeg(img, quality=90) for img in ep.images]
        instruction = "" if fault == "missing_instruction" else ep.instruction
        bad = steps // 2   # the step that carries a single-step fault
        if fault == "corrupt_jpeg":
            images[bad] = _corrupt(images[bad], np.random.default_rng([self._seed, index, 1]))
        elif fault == "nan_action":
            ep.action[bad, 0] = np.nan
        elif fault == "inf_state":
            ep.state[bad, 2] = np.inf
        last = steps - 1
        return {
            "steps": [{
                "observation": {"image": images[t],
                                "wrist_image": encode_jpeg(ep.wrist_images[t], quality=90),
                                "depth": ep.depth[t], "state": ep.state[t]},
                "action": ep.action[t], "language_instruction": instruction,
                "is_first": t == 0, "is_last": t == last, "is_terminal": t == last,
                "reward": float(t == last), "discount": 1.0,
            } for t in range(steps)],
            "episode_metadata": {
                "file_path": f"synthetic/{self.name}/seed_{self._seed}/episode_{index:05d}",
                "episode_id": index,
                "camera_intrinsics": ep.intrinsics, "camera_extrinsics": ep.extrinsics,
            },
        }


@functools.lru_cache(maxsize=None)
def _builder_class(name: str) -> type[SyntheticArmBuilder]:
    """tfds takes a builder's name (and so `dataset_info.json["name"]` and the shard file names)
    from its class; one unregistered subclass per name gives any name without touching tfds'
    global registry."""
    return type(f"SyntheticArmBuilder_{name}", (SyntheticArmBuilder,),
                {"name": name, "__module__": __name__},
                skip_registration=True)


def write_synthetic_rlds(root: str | Path, num_episodes: int = 8, num_steps: int = 24,
                         image_size: tuple[int, int] = (128, 128), seed: int = 0,
                         faults: dict[int, str] | None = None, name: str = "armdata_demo",
                         num_shards: int | None = None) -> Path:
    """Write the dataset under `root` and return its version directory `<root>/<name>/1.0.0`
    (open it with `tfds.builder_from_directory`). `image_size` is (height, width);
    `faults` maps episode index → one of FAULT_KINDS (single-step faults hit step
    num_steps // 2); `num_shards` forces the number of TFRecord shards."""
    faults = dict(faults or {})
    for index, kind in faults.items():
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r} for episode {index}; one of {FAULT_KINDS}")
        if not 0 <= index < num_episodes:
            raise ValueError(f"fault for episode {index}, but there are {num_episodes} episodes")
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2 (faults make shorter episodes), got {num_steps}")
    if not name.isidentifier() or name != name.lower():
        raise ValueError(f"name must be a lowercase identifier (a tfds dataset name), got {name!r}")
    root = Path(root)
    version_dir = root / name / VERSION
    if version_dir.exists():
        raise FileExistsError(f"{version_dir} already exists; write into a fresh root")
    builder = _builder_class(name)(num_episodes=num_episodes, num_steps=num_steps,
                                   image_size=image_size, seed=seed, faults=faults,
                                   data_dir=str(root))
    tfds.disable_progress_bar()   # its bars for a local write of seconds are noise
    with tempfile.TemporaryDirectory() as downloads:
        builder.download_and_prepare(
            download_dir=downloads,
            download_config=tfds.download.DownloadConfig(num_shards=num_shards))
    log.info("wrote %d synthetic episodes to %s", num_episodes, version_dir)
    return version_dir
