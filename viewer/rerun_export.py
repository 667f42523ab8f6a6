"""`armdata view --rerun`: each rendered episode as a Rerun recording (`<slug>.rrd` next to its
page), timeline `step`: the frame (its own encoded bytes), trace, gripper point, object boxes, the
reasoning text and one scalar series per action dimension. Needs rerun-sdk (the `view` extra)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from armdata.viewer.episode import COLUMNS, slug, split_reasoning
from armdata.viewer.site import ViewError
from armdata.schemas.columns import parse_objects
from armdata.commands.preview import read_episode, trace_pixels
from armdata.schemas.output import image_bytes

MEDIA_TYPES = {b"\xff\xd8": "image/jpeg", b"\x89P": "image/png"}


def log_step(rec: Any, rr: Any, row: dict[str, Any]) -> None:
    rec.set_time("step", sequence=row["step"])
    data = image_bytes(row["image"])
    rec.log("camera/image", rr.EncodedImage(contents=data, media_type=MEDIA_TYPES.get(bytes(data[:2]))))
    if row.get("trace"):
        rec.log("camera/trace", rr.LineStrips2D(
            [trace_pixels(row["trace"], row["image_width"], row["image_height"])],
            colors=[(255, 0, 255)]))
    if row.get("gripper_xy"):
        visible = row.get("gripper_visible") is not False
        rec.log("camera/gripper", rr.Points2D([row["gripper_xy"]], radii=4,
                                              colors=[(0, 224, 0) if visible else (255, 165, 0)],
                                              labels=["gripper" if visible else "gripper (hidden)"]))
    if row.get("objects"):
        phrases, boxes = zip(*parse_objects(row["objects"]))
        rec.log("camera/objects", rr.Boxes2D(array=list(boxes), array_format=rr.Box2DFormat.XYXY,
                                             labels=list(phrases)))
    tags = split_reasoning(row.get("reasoning"))
    if tags:
        rec.log("reasoning", rr.TextDocument("\n\n".join(f"**{t}**: {v}" for t, v in tags),
                                             media_type=rr.MediaType.MARKDOWN))
    for d, value in enumerate(row.get("action") or []):
        rec.log(f"action/{d}", rr.Scalars(value))


def write_recordings(output: Path, directory: Path, episodes: list[str]) -> list[Path]:
    try:
        import rerun as rr
    except ImportError as exc:
        raise ViewError("--rerun needs rerun-sdk: pip install 'armdata[view]'") from exc
    paths = []
    for episode_id in episodes:
        path = directory / f"{slug(episode_id)}.rrd"
        rec = rr.RecordingStream("armdata", recording_id=episode_id)
        rec.save(path)
        for row in read_episode(output, episode_id, COLUMNS):
            log_step(rec, rr, row)
        rec.flush()
        rec.disconnect()
        paths.append(path)
    return paths
