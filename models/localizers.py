"""Gripper localizers: where the end effector is in a frame, in pixels (SPEC §3).

Every localizer has `locate(clip, arm, indices) -> (xy (n, 2) float64, found (n,) bool)` for the
clip positions `indices`; `xy` is NaN where nothing was found.

- `ProjectionLocalizer`: the state's end-effector xyz through the camera (config or metadata).
- `PointingLocalizer`: a transformers vision-language model asked to point at the gripper.
- `FitLocalizer`: another localizer on a few frames, then a RANSAC-fitted 3×4 projection of the
  state xyz (Embodied-CoT style) fills every step.
- `ManualLocalizer`: points from a JSON or CSV file.
"""
from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from armdata.models.camera import project_points
from armdata.schemas.config import ArmConfig, CameraConfig
from armdata.schemas.episode import DataError

log = logging.getLogger(__name__)

DEFAULT_POINTING_MODEL = "allenai/Molmo-7B-D-0924"
DEFAULT_PROMPT = "Point to the robot gripper."


@dataclass
class Clip:
    """What a localizer sees of one episode (after validation: every step decodes)."""
    episode_id: str
    frames: np.ndarray                 # (T, H, W, 3) uint8 RGB
    states: np.ndarray                 # (T, D) float32
    steps: list[int]                   # source step index of each frame
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[2]), int(self.frames.shape[1])   # (width, height)


class Localizer(Protocol):
    batch_size: int
    precise: bool   # positions exact to well under a pixel (a tracker defers to them)

    def locate(self, clip: Clip, arm: ArmConfig, indices: Sequence[int]
               ) -> tuple[np.ndarray, np.ndarray]: ...


def in_image(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """(n,) bool: finite and inside the image (pixel centres at 0..size-1, plus half a pixel)."""
    with np.errstate(invalid="ignore"):
        return (np.isfinite(xy).all(axis=1) & (xy[:, 0] >= -0.5) & (xy[:, 0] <= width - 0.5)
                & (xy[:, 1] >= -0.5) & (xy[:, 1] <= height - 0.5))


def arm_xyz(states: np.ndarray, arm: ArmConfig) -> np.ndarray:
    """(T, 3) end-effector positions of one arm; a clear error when the state is too short."""
    need = max(arm.xyz_indices) + 1
    if states.ndim != 2 or states.shape[1] < need:
        raise DataError(f"arm {arm.name!r} reads state indices {list(arm.xyz_indices)} but the "
                         f"state has shape {states.shape}")
    return states[:, list(arm.xyz_indices)].astype(np.float64)


def camera_matrices(camera: CameraConfig | None, metadata: dict[str, Any]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(K (3, 3), T_cam_world (4, 4)) from the config, inline or `episode_metadata/<key>`."""
    if camera is None:
        raise ValueError("the projection localizer needs `camera` (intrinsics and extrinsics) in "
                         "the dataset config")

    def resolve(value: Any, shape: tuple[int, int], what: str) -> np.ndarray:
        if isinstance(value, str):
            key = value.removeprefix("episode_metadata/")
            if key not in metadata:
                raise DataError(f"camera {what}: episode metadata has no {key!r}")
            value = metadata[key]
        try:
            matrix = np.asarray(value, np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"camera {what} is not numeric: {exc}") from exc
        if matrix.size != shape[0] * shape[1]:
            raise DataError(f"camera {what} must have {shape[0]}x{shape[1]} values, got "
                             f"shape {matrix.shape}")
        return matrix.reshape(shape)

    return (resolve(camera.intrinsics, (3, 3), "intrinsics"),
            resolve(camera.extrinsics, (4, 4), "extrinsics"))


class ProjectionLocalizer:
    """Known calibration: project the state's end-effector position."""
    batch_size = 1 << 30   # no per-frame cost
    precise = True

    def __init__(self, camera: CameraConfig | None) -> None:
        self.camera = camera

    def locate(self, clip: Clip, arm: ArmConfig, indices: Sequence[int]
               ) -> tuple[np.ndarray, np.ndarray]:
        K, T = camera_matrices(self.camera, clip.metadata)
        xy = project_points(K, T, arm_xyz(clip.states[list(indices)], arm))
        found = in_image(xy, *clip.size)
        xy[~found] = np.nan
        return xy, found


# --- pointing answers ------------------------------------------------------------------------

_NUM = r"(-?\d+(?:\.\d+)?)"
_POINT_TAG = re.compile(r"<point\b[^>]*?\bx\s*=\s*\"" + _NUM + r"\"[^>]*?\by\s*=\s*\""
                        + _NUM + r"\"", re.IGNORECASE)
_POINTS_TAG = re.compile(r"<points\b[^>]*?\bx1\s*=\s*\"" + _NUM + r"\"[^>]*?\by1\s*=\s*\""
                         + _NUM + r"\"", re.IGNORECASE)
_BRACKETS = re.compile(r"\[\s*" + _NUM + r"\s*,\s*" + _NUM + r"\s*\]")


def parse_point(text: str, width: int, height: int) -> tuple[float, float] | None:
    """The first point in a model's answer, in pixels, or None.

    Molmo-style `<point x=".." y="..">` and `<points x1=".." y1=".." ...>` are percentages of the
    width/height; a plain `[x, y]` is a fraction of the image when both values are ≤ 1, else
    pixels. Points outside the image count as not found."""
    match = _POINT_TAG.search(text) or _POINTS_TAG.search(text)
    if match:
        fx, fy = float(match.group(1)) / 100, float(match.group(2)) / 100
    else:
        match = _BRACKETS.search(text)
        if not match:
            return None
        x, y = float(match.group(1)), float(match.group(2))
        fx, fy = (x, y) if 0 <= x <= 1 and 0 <= y <= 1 else (None, None)
    if fx is not None:
        # relative positions measure from the image's edge; pixel centres sit half a pixel in
        x, y = fx * width - 0.5, fy * height - 0.5
    if not in_image(np.array([[x, y]]), width, height)[0]:
        return None
    return x, y


def pointing_prompt(arm: ArmConfig, num_arms: int, prompt: str = DEFAULT_PROMPT) -> str:
    """Ask for the arm by name when there is more than one."""
    return prompt if num_arms == 1 else prompt.replace("the robot gripper",
                                                       f"the {arm.name} robot gripper")


class PointingLocalizer:
    """A pointing VLM through transformers; `model`/`processor` are loaded by the caller (once per
    worker, `load_pointing_model`). Frames are sent in batches of `batch_size`."""
    precise = False   # a VLM's point is off by a few pixels

    def __init__(self, model: Any, processor: Any, batch_size: int = 8, num_arms: int = 1,
                 prompt: str = DEFAULT_PROMPT, max_new_tokens: int = 40) -> None:
        self.model, self.processor = model, processor
        self.batch_size, self.num_arms = batch_size, num_arms
        self.prompt, self.max_new_tokens = prompt, max_new_tokens

    def locate(self, clip: Clip, arm: ArmConfig, indices: Sequence[int]
               ) -> tuple[np.ndarray, np.ndarray]:
        width, height = clip.size
        prompt = pointing_prompt(arm, self.num_arms, self.prompt)
        xy = np.full((len(indices), 2), np.nan)
        for start in range(0, len(indices), self.batch_size):
            batch = list(indices[start:start + self.batch_size])
            answers = generate_answers(self.model, self.processor, clip.frames[batch], prompt,
                                       self.max_new_tokens)
            for j, answer in enumerate(answers):
                point = parse_point(answer, width, height)
                if point is not None:
                    xy[start + j] = point
        return xy, np.isfinite(xy).all(axis=1)


def load_pointing_model(model_id: str, device: Any, trust_remote_code: bool = False
                        ) -> tuple[Any, Any]:
    """(model, processor) for a Hub id or local directory; a clear error when it cannot load."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        processor = AutoProcessor.from_pretrained(model_id, trust_remote_code=trust_remote_code)
        try:
            model = AutoModelForImageTextToText.from_pretrained(
                model_id, trust_remote_code=trust_remote_code, dtype=dtype)
        except ValueError:   # remote-code models (Molmo) register as causal LMs
            model = AutoModelForCausalLM.from_pretrained(
                model_id, trust_remote_code=trust_remote_code, dtype=dtype)
    except Exception as exc:
        hint = "" if trust_remote_code else " (models with their own code need --trust-remote-code)"
        raise RuntimeError(f"cannot load pointing model {model_id!r}: {exc}{hint}") from exc
    if getattr(processor, "tokenizer", None) is not None:
        processor.tokenizer.padding_side = "left"   # batched generation continues on the right
    return model.to(device).eval(), processor


def generate_answers(model: Any, processor: Any, frames: np.ndarray, prompt: str,
                     max_new_tokens: int) -> list[str]:
    """One decoded answer per frame, generated as one batch (greedy)."""
    import torch
    from PIL import Image

    from armdata.models.device import autocast

    images = [Image.fromarray(f) for f in frames]
    if getattr(processor, "chat_template", None):
        content = [{"type": "image"}, {"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": content}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
    elif getattr(processor, "image_token", None):   # no template: the image goes first
        text = f"{processor.image_token} {prompt}"
    else:
        text = prompt
    with torch.inference_mode(), autocast(model.device):
        if hasattr(processor, "process") and hasattr(model, "generate_from_batch"):
            return [_molmo_remote_answer(model, processor, image, prompt, max_new_tokens)
                    for image in images]
        inputs = processor(images=images, text=[text] * len(images), return_tensors="pt",
                           padding=True).to(model.device)
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
    return processor.batch_decode(new_tokens, skip_special_tokens=True)


def _molmo_remote_answer(model: Any, processor: Any, image: Any, prompt: str,
                         max_new_tokens: int) -> str:
    """Molmo's own code (trust_remote_code) takes one image per `processor.process` call."""
    from transformers import GenerationConfig

    inputs = processor.process(images=[image], text=prompt)
    inputs = {k: v.to(model.device).unsqueeze(0) for k, v in inputs.items()}
    out = model.generate_from_batch(inputs, GenerationConfig(max_new_tokens=max_new_tokens,
                                                             stop_strings="<|endoftext|>"),
                                    tokenizer=processor.tokenizer)
    return processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:],
                                      skip_special_tokens=True)


# --- robust per-episode fit -------------------------------------------------------------------

def _normalizer(points: np.ndarray) -> np.ndarray:
    """Hartley normalization: centroid to the origin, mean distance sqrt(dim)."""
    dim = points.shape[1]
    centre = points.mean(axis=0)
    scale = np.sqrt(dim) / max(np.linalg.norm(points - centre, axis=1).mean(), 1e-12)
    T = np.eye(dim + 1)
    T[:dim, :dim] *= scale
    T[:dim, dim] = -scale * centre
    return T


def dlt_projection(xyz: np.ndarray, uv: np.ndarray) -> np.ndarray | None:
    """3×4 projection matrix P with uv ~ P [xyz, 1] from ≥ 6 correspondences (normalized DLT);
    None for a degenerate configuration (e.g. coplanar or collinear points)."""
    if len(xyz) < 6:
        return None
    Tx, Tu = _normalizer(xyz), _normalizer(uv)
    X = np.c_[xyz, np.ones(len(xyz))] @ Tx.T
    U = np.c_[uv, np.ones(len(uv))] @ Tu.T
    # two rows per point, interleaved: [X, 0, -u X] and [0, X, -v X]
    rows = np.zeros((2 * len(X), 12))
    rows[0::2, :4], rows[0::2, 8:] = X, -U[:, :1] * X
    rows[1::2, 4:8], rows[1::2, 8:] = X, -U[:, 1:2] * X
    _, sing, vt = np.linalg.svd(rows)
    # a second (near-)null direction means the points do not pin P down
    if sing[-2] < 1e-8 * sing[0]:
        return None
    P = np.linalg.inv(Tu) @ vt[-1].reshape(3, 4) @ Tx
    return P / np.linalg.norm(P)


def apply_projection(P: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """(N, 2) pixels of world points through a 3×4 matrix; NaN where the point is at infinity."""
    h = np.c_[xyz, np.ones(len(xyz))] @ P.T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = h[:, :2] / h[:, 2:3]
    uv[np.abs(h[:, 2]) < 1e-12] = np.nan
    return uv


def fit_projection_ransac(xyz: np.ndarray, uv: np.ndarray, threshold: float = 4.0,
                          iterations: int = 500, seed: int = 0
                          ) -> tuple[np.ndarray | None, np.ndarray]:
    """RANSAC over minimal 6-point DLT fits, then a DLT refit on the inliers.
    Returns (P or None, inlier mask). `threshold` is the reprojection error in pixels."""
    xyz, uv = np.asarray(xyz, np.float64), np.asarray(uv, np.float64)
    n = len(xyz)
    best = np.zeros(n, bool)
    if n < 6:
        return None, best
    rng = np.random.default_rng(seed)
    for _ in range(iterations):
        sample = rng.choice(n, 6, replace=False)
        P = dlt_projection(xyz[sample], uv[sample])
        if P is None:
            continue
        err = np.linalg.norm(apply_projection(P, xyz) - uv, axis=1)
        inliers = np.nan_to_num(err, nan=np.inf) < threshold
        if inliers.sum() > best.sum():
            best = inliers
            if best.all():
                break
    if best.sum() < 6:
        return None, best
    P = dlt_projection(xyz[best], uv[best])
    if P is None:
        return None, best
    err = np.linalg.norm(apply_projection(P, xyz) - uv, axis=1)
    return P, np.nan_to_num(err, nan=np.inf) < threshold


class FitLocalizer:
    """`base` on `num_frames` evenly spaced frames, then state xyz → pixels by a RANSAC fit.
    Too few detections or no consistent fit → nothing found for the episode."""
    precise = False   # fitted to the base localizer's points, within `threshold` pixels

    def __init__(self, base: Localizer, num_frames: int = 16, threshold: float = 4.0) -> None:
        self.base, self.num_frames, self.threshold = base, num_frames, threshold
        self.batch_size = 1 << 30   # after the fit every frame is free
        self._cache: tuple[Any, str, np.ndarray | None] | None = None

    def fitted(self, clip: Clip, arm: ArmConfig) -> np.ndarray | None:
        if self._cache is not None and self._cache[0] is clip and self._cache[1] == arm.name:
            return self._cache[2]
        T = len(clip.frames)
        sample = np.unique(np.linspace(0, T - 1, min(self.num_frames, T)).astype(int))
        uv, found = self.base.locate(clip, arm, sample)
        xyz = arm_xyz(clip.states[sample], arm)[found]
        P, inliers = fit_projection_ransac(xyz, uv[found], self.threshold)
        log.debug("fit %s/%s: %d detections, %d inliers", clip.episode_id, arm.name,
                  int(found.sum()), int(inliers.sum()))
        self._cache = (clip, arm.name, P)
        return P

    def locate(self, clip: Clip, arm: ArmConfig, indices: Sequence[int]
               ) -> tuple[np.ndarray, np.ndarray]:
        P = self.fitted(clip, arm)
        if P is None:
            return np.full((len(indices), 2), np.nan), np.zeros(len(indices), bool)
        xy = apply_projection(P, arm_xyz(clip.states[list(indices)], arm))
        found = in_image(xy, *clip.size)
        xy[~found] = np.nan
        return xy, found


# --- manual points ----------------------------------------------------------------------------

def load_manual_points(path: str | Path) -> dict[tuple[str, str | None, int], tuple[float, float]]:
    """Points keyed by (episode_id, arm or None, source step).

    JSON: `{episode_id: {step: [x, y]}}` or, per arm, `{episode_id: {arm: {step: [x, y]}}}`.
    CSV: a header with `episode_id,step,x,y` and optionally `arm`."""
    path = Path(path)
    points: dict[tuple[str, str | None, int], tuple[float, float]] = {}
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                missing = {"episode_id", "step", "x", "y"} - set(reader.fieldnames or [])
                if missing:
                    raise ValueError(f"missing column(s) {sorted(missing)}")
                for row in reader:
                    arm = row.get("arm") or None
                    points[(row["episode_id"], arm, int(row["step"]))] = (float(row["x"]),
                                                                          float(row["y"]))
            return points
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("expected an object keyed by episode id")
        for episode_id, entries in raw.items():
            for key, value in entries.items():
                if isinstance(value, dict):   # per arm
                    for step, xy in value.items():
                        points[(episode_id, key, int(step))] = (float(xy[0]), float(xy[1]))
                else:
                    points[(episode_id, None, int(key))] = (float(value[0]), float(value[1]))
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"cannot read manual points from {path}: {exc}") from exc
    return points


class ManualLocalizer:
    batch_size = 1 << 30
    precise = False   # clicked by hand: a pixel or two

    def __init__(self, points: dict[tuple[str, str | None, int], tuple[float, float]]) -> None:
        self.points = points

    def locate(self, clip: Clip, arm: ArmConfig, indices: Sequence[int]
               ) -> tuple[np.ndarray, np.ndarray]:
        xy = np.full((len(indices), 2), np.nan)
        for j, i in enumerate(indices):
            key = (clip.episode_id, arm.name, clip.steps[i])
            point = self.points.get(key, self.points.get((clip.episode_id, None, clip.steps[i])))
            if point is not None:
                xy[j] = point
        found = in_image(xy, *clip.size)
        xy[~found] = np.nan
        return xy, found
