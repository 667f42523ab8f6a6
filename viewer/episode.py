"""One episode's page data: frames written once as the row's own image bytes, depth decoded from
the depth codes with the VQ-VAE (as a colour-mapped PNG), and per step the trace, gripper, object
boxes, reasoning split by tag, plan position, motion and actions."""
from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from armdata.schemas.columns import parse_objects
from armdata.commands.preview import read_episode
from armdata.schemas.output import image_bytes
from armdata.transforms.plan import TAGS

log = logging.getLogger(__name__)

COLUMNS = ("step", "instruction", "image", "wrist_image", "image_width", "image_height",
           "depth_png", "depth_codes", "trace", "gripper_xy", "gripper_visible", "action",
           "action_normalized", "motion", "objects", "plan", "subtask", "reasoning")
IMAGE_SUFFIX = {b"\xff\xd8": ".jpg", b"\x89P": ".png"}


def slug(episode_id: str) -> str:
    """A file name for an episode id (ids hold '/' and other characters): readable part plus a
    short hash, so that two ids never share a page."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", episode_id).strip("_")[-60:]
    return f"{readable}-{hashlib.sha1(episode_id.encode()).hexdigest()[:8]}"


def split_reasoning(text: str | None) -> list[list[str]]:
    """`TAG: value ...` (compose_reasoning's form, tags in TAGS order) → [[tag, value], ...].
    Searched from the end: the late tags' values (MOVE, GRIPPER POSITION) are labels and numbers,
    the early ones free text that may contain a tag name."""
    text = text or ""
    found: list[list[str]] = []
    end = len(text)
    for tag in reversed(TAGS):
        k = text.rfind(f" {tag}: ", 0, end)
        start = k + 1 if k >= 0 else (0 if text.startswith(f"{tag}: ") else -1)
        if start < 0:
            continue
        found.insert(0, [tag, text[start + len(tag) + 2:end].strip()])
        end = max(start - 1, 0)
    return found


def plan_position(first: list[str] | None, remaining: list[str] | None) -> int | None:
    """Index in the episode's first (full) plan of the step's current plan item: the remaining
    plan is a suffix of the full one."""
    if not first or not remaining or first[len(first) - len(remaining):] != remaining:
        return None
    return len(first) - len(remaining)


def write_image(data: bytes | None, path: Path) -> str | None:
    """The encoded bytes as they are (no re-encode), with the suffix of their format; the file
    name relative to the page."""
    if not data:
        return None
    path = path.with_suffix(IMAGE_SUFFIX.get(bytes(data[:2]), ".img"))
    if not path.exists() or path.stat().st_size != len(data):
        path.write_bytes(data)
    return f"{path.parent.name}/{path.name}"


def depth_png(depth: np.ndarray) -> bytes:
    """A uint8 depth map as a PNG in the turbo colour map (near: red, far: blue)."""
    ok, png = cv2.imencode(".png", cv2.applyColorMap(depth, cv2.COLORMAP_TURBO))
    if not ok:
        raise RuntimeError("PNG encoding of a depth map failed")
    return png.tobytes()


def episode_data(output: Path, episode_id: str, page_dir: Path, decode: Any,
                 rejections: list[dict[str, Any]]) -> dict[str, Any]:
    """Write the episode's images under `page_dir/<slug>/` and return what its page shows.
    `decode(rows)` → {step: uint8 depth map} (empty without a VQ-VAE)."""
    rows = read_episode(output, episode_id, COLUMNS)
    files = page_dir / slug(episode_id)
    files.mkdir(parents=True, exist_ok=True)
    decoded = decode(rows)
    first_plan = json.loads(rows[0]["plan"]) if rows[0].get("plan") else None
    steps = []
    for row in rows:
        s = row["step"]
        remaining = json.loads(row["plan"]) if row.get("plan") else None
        depth = decoded.get(s)
        steps.append({
            "step": s,
            "image": write_image(image_bytes(row["image"]), files / f"frame_{s:04d}"),
            "wrist": write_image(image_bytes(row.get("wrist_image")), files / f"wrist_{s:04d}"),
            "depth": None if depth is None else
            write_image(depth_png(depth), files / f"depth_{s:04d}"),
            "sensor_depth": write_image(image_bytes(row.get("depth_png")),
                                        files / f"stored_depth_{s:04d}"),
            "width": row.get("image_width"), "height": row.get("image_height"),
            "trace": row.get("trace"), "gripper": row.get("gripper_xy"),
            "visible": row.get("gripper_visible"),
            "objects": [[p, list(box)] for p, box in parse_objects(row["objects"])]
            if row.get("objects") else [],
            "tags": split_reasoning(row.get("reasoning")),
            "plan": remaining, "plan_index": plan_position(first_plan, remaining),
            "motion": row.get("motion"), "subtask": row.get("subtask"),
            "action": row.get("action"), "action_normalized": row.get("action_normalized")})
    return {"id": episode_id, "instruction": rows[0].get("instruction"), "plan": first_plan,
            "steps": steps, "depth_decoded": bool(decoded),
            "rejections": [r for r in rejections if r["episode_id"] == episode_id]}
