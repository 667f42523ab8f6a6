"""`armdata preview`: per-step PNG strips of one episode of a built dataset, to see what the depth
tokens keep, where the trace goes and what the reasoning stage wrote.

Each strip is RGB (with the `trace` polyline, arrowhead at its last point, the `gripper_xy`
point and the reasoning stage's `objects` boxes) | stored depth map (`depth_png`, when built with
--store-depth) | depth decoded from the `depth_codes` by the VQ-VAE (with --vqvae). Panels are
scaled to a common height; a text band below them shows the step's `motion` and `subtask`.
"""
from __future__ import annotations

import argparse
import io
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as ds
import torch
from PIL import Image, ImageDraw

from armdata.models.device import DEVICE_CHOICES, resolve_device
from armdata.models.vqvae import decoded_to_u8, load_vqvae
from armdata.errors import UsageError
from armdata.schemas.episode import decode_rgb
from armdata.schemas.output import image_bytes
from armdata.schemas.columns import parse_objects

log = logging.getLogger(__name__)

COLUMNS = ("step", "image", "depth_png", "depth_codes", "trace", "gripper_xy", "motion",
           "subtask", "objects")
TRACE_COLOR = (255, 40, 40)
GRIPPER_COLOR = (40, 255, 40)
OBJECT_COLOR = (255, 200, 0)
GAP = 4
LINE_HEIGHT = 12
TITLE_HEIGHT = LINE_HEIGHT + 2   # the band above the panels that names each one


class PreviewError(UsageError):
    """The dataset or episode cannot be previewed."""


def trace_pixels(trace: list[list[int]], width: int, height: int) -> list[tuple[float, float]]:
    """0–255 normalized trace points → pixels of a width×height image (v * size / 256)."""
    return [(x * width / 256, y * height / 256) for x, y in trace]


def arrowhead(tail: tuple[float, float], tip: tuple[float, float],
              length: float) -> list[tuple[float, float]]:
    """Triangle (tip, left, right) pointing from `tail` to `tip`, sides at ±25° to the segment."""
    angle = math.atan2(tip[1] - tail[1], tip[0] - tail[0])
    spread = math.radians(25)
    return [tip] + [(tip[0] - length * math.cos(angle + s), tip[1] - length * math.sin(angle + s))
                    for s in (spread, -spread)]


def draw_overlay(panel: Image.Image, scale: float, trace: list[list[int]] | None,
                 gripper_xy: list[float] | None, width: int, height: int) -> None:
    """Draw the trace (normalized to the frame's width×height) and the gripper point (frame
    pixels) on a panel that shows the frame scaled by `scale`."""
    draw = ImageDraw.Draw(panel)
    size = max(2.0, panel.height / 64)
    if trace:
        points = [(x * scale, y * scale) for x, y in trace_pixels(trace, width, height)]
        if len(points) > 1:
            draw.line(points, fill=TRACE_COLOR, width=max(1, round(size / 2)))
        tail = next((p for p in reversed(points[:-1]) if p != points[-1]), None)
        if tail is not None:
            draw.polygon(arrowhead(tail, points[-1], 3 * size), fill=TRACE_COLOR)
        else:
            x, y = points[-1]
            draw.ellipse([x - size, y - size, x + size, y + size], outline=TRACE_COLOR)
    if gripper_xy is not None:
        x, y = gripper_xy[0] * scale, gripper_xy[1] * scale
        draw.ellipse([x - size, y - size, x + size, y + size], outline=GRIPPER_COLOR,
                     width=max(1, round(size / 2)))


def draw_objects(panel: Image.Image, scale: float, objects: str | None) -> None:
    """The `objects` boxes (frame pixels) with their phrases, on a panel scaled by `scale`."""
    if not objects:
        return
    draw = ImageDraw.Draw(panel)
    for phrase, (x0, y0, x1, y1) in parse_objects(objects):
        draw.rectangle([x0 * scale, y0 * scale, x1 * scale, y1 * scale], outline=OBJECT_COLOR)
        draw.text((x0 * scale + 2, y0 * scale + 1), phrase, fill=OBJECT_COLOR)


def text_lines(row: dict[str, Any]) -> list[str]:
    """The reasoning text shown under a strip (empty when the reasoning stage did not run)."""
    return [f"{label}: {row[key]}" for key, label in (("motion", "MOVE"), ("subtask", "SUBTASK"))
            if row.get(key)]


def read_episode(output: Path, episode_id: str,
                 wanted: tuple[str, ...] = COLUMNS) -> list[dict[str, Any]]:
    """The episode's rows (the `wanted` columns present), sorted by step."""
    shards = sorted((output / "data").glob("*.parquet"))
    if not shards:
        raise PreviewError(f"{output}/data has no Parquet shards: is {output} a built dataset?")
    dataset = ds.dataset([str(s) for s in shards], format="parquet")
    columns = [c for c in wanted if c in dataset.schema.names]
    rows = dataset.to_table(columns=columns,
                            filter=ds.field("episode_id") == episode_id).to_pylist()
    if not rows:
        sample = dataset.to_table(columns=["episode_id"]).column(0).unique().to_pylist()[:5]
        raise PreviewError(f"episode {episode_id!r} not found in {output}; e.g. {sample}")
    return sorted(rows, key=lambda r: r["step"])


def decode_codes(rows: list[dict[str, Any]], vqvae_path: str,
                 device: torch.device) -> dict[int, np.ndarray]:
    """step → 320×320 uint8 map decoded from its depth codes (one batch for the episode)."""
    steps = [r["step"] for r in rows if r.get("depth_codes") is not None]
    if not steps:
        return {}
    model = load_vqvae(vqvae_path, device)
    codes = torch.tensor([r["depth_codes"] for r in rows if r.get("depth_codes") is not None],
                         device=device)
    with torch.inference_mode():
        maps = decoded_to_u8(model.decode(codes)).cpu().numpy()
    return dict(zip(steps, maps))


def strip(row: dict[str, Any], decoded: np.ndarray | None, height: int) -> Image.Image:
    rgb = decode_rgb(image_bytes(row["image"]))
    h, w = rgb.shape[:2]
    scale = height / h
    size = (max(1, round(w * scale)), height)
    frame = Image.fromarray(rgb).resize(size, Image.BILINEAR)
    draw_overlay(frame, scale, row.get("trace"), row.get("gripper_xy"), w, h)
    draw_objects(frame, scale, row.get("objects"))
    panels = [("frame + trace" if row.get("trace") else "frame", frame)]
    if row.get("depth_png"):
        with Image.open(io.BytesIO(image_bytes(row["depth_png"]))) as depth:
            panels.append(("stored depth", depth.convert("RGB").resize(size, Image.BILINEAR)))
    if decoded is not None:
        panels.append(("decoded depth tokens",
                       Image.fromarray(decoded).convert("RGB").resize(size, Image.BILINEAR)))
    lines = text_lines(row)
    band = LINE_HEIGHT * len(lines) + (GAP if lines else 0)
    out = Image.new("RGB", (sum(p.width for _, p in panels) + GAP * (len(panels) - 1),
                            TITLE_HEIGHT + height + band))
    draw = ImageDraw.Draw(out)
    x = 0
    for title, p in panels:
        draw.text((x + 2, 1), title, fill=(255, 255, 255))
        out.paste(p, (x, TITLE_HEIGHT))
        x += p.width + GAP
    for k, line in enumerate(lines):
        draw.text((2, TITLE_HEIGHT + height + GAP + k * LINE_HEIGHT), line, fill=(255, 255, 255))
    return out


def write_preview(output: Path, episode_id: str, out_dir: Path, vqvae: str | None,
                  device: str, height: int) -> list[Path]:
    """One strip per step of the episode; `device` (a --device choice) is resolved only when
    there are depth tokens to decode, after the episode was found."""
    rows = read_episode(output, episode_id)
    if not any(r.get("depth_png") for r in rows):
        log.info("no depth_png stored (build with --store-depth): depth panel omitted")
    decoded = {}
    if vqvae:
        decoded = decode_codes(rows, vqvae, resolve_device(device, "preview"))
        if not decoded:
            log.info("no depth_codes in this episode: decoded-depth panel omitted")
    else:
        log.info("no --vqvae given: decoded-depth panel omitted")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for row in rows:
        path = out_dir / f"step_{row['step']:04d}.png"
        strip(row, decoded.get(row["step"]), height).save(path)
        paths.append(path)
    return paths


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "preview", help="PNG strips of one episode: RGB+trace+objects | depth | decoded depth "
                           "tokens, with motion and subtask below",
        description="Write one PNG per step of an episode of a built dataset: the RGB frame with "
                    "the trace and gripper point drawn on it | the stored depth map "
                    "(--store-depth builds) | the depth decoded from the depth tokens "
                    "(needs --vqvae).")
    p.add_argument("output", help="built dataset directory (with data/*.parquet)")
    p.add_argument("--episode", required=True, help="episode_id to preview")
    p.add_argument("--out", required=True, help="directory for the PNG strips")
    p.add_argument("--vqvae", help="VQ-VAE checkpoint to decode the depth tokens with")
    p.add_argument("--height", type=int, default=256, help="panel height in pixels (default 256)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.height < 16:
        raise UsageError(f"--height must be at least 16 pixels, got {args.height}")
    try:
        paths = write_preview(Path(args.output), args.episode, Path(args.out), args.vqvae,
                              args.device, args.height)
    except (RuntimeError, FileNotFoundError, ValueError) as exc:   # PreviewError, models
        raise UsageError(str(exc)) from exc
    print(f"wrote {len(paths)} strips to {args.out}")
    return 0
