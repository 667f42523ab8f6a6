"""The canonical episode every stage works on.

One `Episode` per source episode. Images stay encoded (JPEG/PNG bytes) until a stage needs pixels;
`decode_rgb` is the one place that turns them into arrays. Stages fill the optional per-step fields
(depth, trace, reasoning parts) and drop unusable steps through `Episode.drop_steps`, which returns the
`Rejection` records so that nothing disappears silently.
"""
from __future__ import annotations

import dataclasses
import io
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from armdata.schemas.jpeg import JpegError, jpeg_size


class DataError(ValueError):
    """Something is wrong with one episode's (or step's) data: it is rejected with this message.
    Raised only where data is judged bad, never for bugs or infrastructure failures, which must
    fail the job instead of turning into rejections."""


@dataclass
class Step:
    index: int                       # index in the source episode (dropped steps leave gaps)
    image: bytes                     # encoded primary camera frame
    action: np.ndarray               # canonical 7-d float32: dx dy dz droll dpitch dyaw gripper(1=open)
    state: np.ndarray                # float32 proprio, may be empty
    instruction: str
    is_first: bool = False
    is_last: bool = False
    is_terminal: bool = False
    wrist_image: bytes | None = None
    sensor_depth: np.ndarray | None = None   # (H, W) float32 depth from a depth camera, if configured
    image_width: int = 0                     # set by validation from the decoded frame
    image_height: int = 0
    # Filled by later stages; None means "stage not run" (or a counted failure).
    depth_codes: np.ndarray | None = None    # (100,) uint8, SPEC §2
    depth_png: bytes | None = None           # 8-bit depth map as PNG (--store-depth)
    gripper_xy: tuple[float, float] | None = None   # pixels of the frame
    gripper_visible: bool | None = None
    trace: list[list[int]] | None = None     # 0..255 points, SPEC §3
    arm_traces: list[dict[str, Any]] | None = None  # bimanual: [{arm, gripper_xy, gripper_visible, trace}]
    # Reasoning stage (SPEC §7): per-step parts and the composed ECoT text.
    motion: str | None = None
    scene_caption: str | None = None
    objects: str | None = None               # "phrase [x0, y0, x1, y1], ..." in pixels
    object_scores: list[float] | None = None  # the detector's score of each box in `objects`
    plan: list[str] | None = None            # the remaining high-level plan at this step
    subtask: str | None = None
    subtask_reason: str | None = None
    move_reason: str | None = None
    reasoning: str | None = None


@dataclass
class Rejection:
    """One unusable episode or step. `steps` is how many source steps this record accounts for, so
    that steps_in == steps_out + sum(steps) holds for every build."""
    dataset: str
    episode_id: str
    step: int | None          # None: the whole episode
    stage: str
    reason: str
    steps: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Episode:
    dataset: str
    episode_id: str
    num_steps: int                           # length of the source episode
    steps: list[Step]
    metadata: dict[str, Any] = field(default_factory=dict)  # JSON-able, passed through
    # every source step's state (num_steps, S), also those a config drops (Bridge's last step):
    # language motions are windows over the whole source episode (SPEC §7)
    source_states: np.ndarray | None = None

    def drop_steps(self, reasons: dict[int, str], stage: str) -> list[Rejection]:
        """Remove the steps at the given positions (list positions, not source indices) and return
        one Rejection per dropped step, plus one for the episode if no step is left."""
        if not reasons:
            return []
        rejections = [Rejection(self.dataset, self.episode_id, self.steps[i].index, stage, reason)
                      for i, reason in sorted(reasons.items())]
        self.steps = [s for i, s in enumerate(self.steps) if i not in reasons]
        if not self.steps:
            rejections.append(self.reject(stage, "no usable steps left", steps=0))
        return rejections

    def reject(self, stage: str, reason: str, steps: int | None = None) -> Rejection:
        """A record rejecting the whole episode; by default it accounts for all remaining steps."""
        n = len(self.steps) if steps is None else steps
        return Rejection(self.dataset, self.episode_id, None, stage, reason, steps=n)

    def actions(self) -> np.ndarray:
        return np.stack([s.action for s in self.steps]).astype(np.float32) if self.steps \
            else np.zeros((0, 7), np.float32)

    def states(self) -> np.ndarray:
        return np.stack([s.state for s in self.steps]).astype(np.float32) if self.steps \
            else np.zeros((0, 0), np.float32)


def load_image(data: bytes) -> Image.Image:
    """Fully decode an encoded frame (truncated files only fail on a full decode). Raises
    DataError on corrupt data, with a message that is the same on every run."""
    return _decode(data, draft=False)[0]


def check_image(data: bytes) -> tuple[int, int]:
    """(w, h) of an encoded frame, with its data checked to the end. A JPEG's marker structure is
    walked without decoding (`armdata.schemas.jpeg`: truncated, cut or garbled files fail, ~10x cheaper
    than a decode); other formats are decoded (a JPEG-in-disguise too, at 1/8 scale). Raises
    DataError like `load_image`."""
    if data[:2] == b"\xff\xd8":
        try:
            return jpeg_size(data)
        except JpegError as exc:
            raise DataError(f"cannot decode image ({len(data)} bytes): {exc}") from exc
    return _decode(data, draft=True)[1]


def _decode(data: bytes, draft: bool) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded image and its stored (w, h) (a draft decode is smaller than that)."""
    try:
        img = Image.open(io.BytesIO(data))
        size = img.size
        if draft:
            img.draft(img.mode, (img.width // 8, img.height // 8))   # a no-op for non-JPEG
        img.load()
        return img, size
    except Exception as exc:  # PIL raises several types for bad data
        # PIL's messages may name a memory address; keep rejection reasons reproducible.
        detail = re.sub(r"<[^>]* at 0x[0-9a-f]+>", "the data", str(exc))
        raise DataError(f"cannot decode image ({len(data)} bytes): {detail}") from exc


def decode_rgb(data: bytes) -> np.ndarray:
    """Decode an encoded frame to (H, W, 3) uint8. Raises DataError on corrupt data."""
    return np.asarray(load_image(data).convert("RGB"))


def encode_png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def encode_jpeg(array: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
