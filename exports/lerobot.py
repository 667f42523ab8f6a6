"""LeRobot export, the layout LeRobot's own `LeRobotDataset(repo_id, root=DIR)` reads (SPEC §9):
v3.0 (default; lerobot ≥ 0.4) or v2.1 (lerobot 0.3.x, what MolmoAct's preprocessing reads).

Cameras are mp4 video (`video=True`, PyAV, h264 or AV1) or images in the Parquet (Image structs
carrying the build's encoded frames). `action` is the canonical 7-d action, `observation.state` the
state. The frame rate is the build config's `fps` (the robot's control rate), else a LeRobot
source's; a build with neither is refused (RLDS stores none, and a guessed rate would mistime
every frame). Every Parquet file carries the `huggingface` schema metadata (LeRobot loads them
without a features argument), and the stats cover every feature, cameras included (shape (3,1,1),
values in 0..1, over every frame). The layouts themselves are in `lerobot_v21` and `lerobot_v30`."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import yaml

from armdata.exports.rows import ExportError, iter_episodes, require_empty
from armdata.exports.video import CODECS
from armdata.pipeline.sinks.card import LICENSE_PATH, hub_license, license_text, size_category
from armdata.pipeline.sinks.manifest import load_manifest
from armdata.schemas.episode import load_image
from armdata.schemas.output import IMAGE, image_bytes, image_cell

log = logging.getLogger(__name__)

VERSIONS = ("v2.1", "v3.0")
CHUNKS_SIZE = 1000
COLUMNS = ["step", "instruction", "image", "wrist_image", "image_width", "image_height", "state",
           "action"]
IMAGE_KEYS = {"image": "observation.images.image", "wrist_image": "observation.images.wrist_image"}
INDEX_FEATURES = ("frame_index", "episode_index", "index", "task_index")


@dataclass
class LeRobotEpisode:
    """One episode in LeRobot's terms: numeric columns, each camera's encoded frames and, when
    decoded (video or stats), its RGB frames."""
    episode_index: int
    episode_id: str
    task: str
    numeric: dict[str, np.ndarray]        # feature → (T, D) or (T,)
    encoded: dict[str, list[bytes]]       # camera feature → encoded frames
    decoded: dict[str, list[np.ndarray]]  # camera feature → RGB uint8 frames

    @property
    def length(self) -> int:
        return len(self.numeric["index"])

    def stats(self) -> dict[str, dict[str, list]]:
        out = {k: numeric_stats(v) for k, v in self.numeric.items()}
        out.update({k: image_stats(v) for k, v in self.decoded.items()})
        return out

    def parquet_columns(self, features: dict[str, Any]) -> dict[str, pa.Array]:
        """The frame table's columns (cameras only where their dtype is "image")."""
        cols = {k: pa.array([image_cell(b) for b in frames], IMAGE)
                for k, frames in self.encoded.items() if features[k]["dtype"] == "image"}
        for k, v in self.numeric.items():
            cols[k] = pa.array(list(v), pa.list_(pa.float32())) if v.ndim == 2 else pa.array(v)
        return cols


def numeric_stats(values: np.ndarray) -> dict[str, list]:
    """LeRobot's per-episode stats of a (T,) or (T, D) feature."""
    values = np.asarray(values, np.float64).reshape(len(values), -1)
    return {"min": values.min(0).tolist(), "max": values.max(0).tolist(),
            "mean": values.mean(0).tolist(), "std": values.std(0).tolist(),
            "count": [len(values)]}


def image_stats(frames: list[np.ndarray]) -> dict[str, list]:
    """LeRobot's per-episode stats of a camera: per channel over every pixel of every frame,
    values in 0..1, shape (3, 1, 1)."""
    pixels = np.stack(frames).reshape(-1, 3).astype(np.float64) / 255.0
    def channel(v: np.ndarray) -> list:
        return [[[float(x)]] for x in v]
    return {"min": channel(pixels.min(0)), "max": channel(pixels.max(0)),
            "mean": channel(pixels.mean(0)), "std": channel(pixels.std(0)),
            "count": [len(frames)]}


def aggregate_stats(per_episode: list[dict[str, dict[str, list]]]) -> dict[str, dict[str, list]]:
    """Dataset stats from episode stats: min of mins, max of maxes, count-weighted mean, pooled
    std (from each episode's mean and std)."""
    out = {}
    for key in per_episode[0]:
        parts = [s[key] for s in per_episode]
        n = np.array([p["count"][0] for p in parts], np.float64)
        mean = np.array([p["mean"] for p in parts], np.float64)
        std = np.array([p["std"] for p in parts], np.float64)
        w = (n / n.sum()).reshape(-1, *[1] * (mean.ndim - 1))
        total_mean = (w * mean).sum(0)
        var = (w * (std ** 2 + mean ** 2)).sum(0) - total_mean ** 2
        out[key] = {"min": np.min([p["min"] for p in parts], 0).tolist(),
                    "max": np.max([p["max"] for p in parts], 0).tolist(),
                    "mean": total_mean.tolist(), "std": np.sqrt(np.maximum(var, 0)).tolist(),
                    "count": [int(n.sum())]}
    return out


def hf_features(features: dict[str, Any]) -> dict[str, Any]:
    """The `huggingface` schema metadata of the frame Parquet: LeRobot's own mapping of its
    features to `datasets` types (videos are not in the Parquet), in the serialized form both
    datasets 3.x (lerobot 0.3) and 4.x+ parse."""
    out: dict[str, Any] = {}
    for key, ft in features.items():
        if ft["dtype"] == "video":
            continue
        if ft["dtype"] == "image":
            out[key] = {"_type": "Image"}
        elif ft["shape"] == [1]:
            out[key] = {"dtype": ft["dtype"], "_type": "Value"}
        else:
            out[key] = {"feature": {"dtype": ft["dtype"], "_type": "Value"},
                        "length": ft["shape"][0], "_type": "Sequence"}
    return out


def with_hf_metadata(table: pa.Table, features: dict[str, Any]) -> pa.Table:
    return table.replace_schema_metadata({b"huggingface": json.dumps(
        {"info": {"features": hf_features(features)}}).encode()})


def export_fps(manifest: dict[str, Any], dataset_dir: str) -> float:
    """The build's control rate: its config's `fps`, else its LeRobot source's."""
    fps = (manifest.get("config") or {}).get("fps") or manifest.get("source", {}).get("fps")
    if not fps:
        raise ExportError(f"{dataset_dir}: its config has no `fps` (the robot's control rate, "
                          f"Hz) and its source records none; add `fps:` to the config and rebuild")
    return int(fps) if float(fps).is_integer() else float(fps)


def read_episodes(dataset_dir: str, fps: float, video: bool
                  ) -> Iterator[tuple[LeRobotEpisode, dict[str, Any]]]:
    """The build's episodes with the dataset's features (from the first frame). Every frame must
    have the first frame's size and cameras (LeRobot has one shape per feature)."""
    tasks: dict[str, int] = {}
    features: dict[str, Any] | None = None
    index = 0
    for episode_index, rows in enumerate(iter_episodes(dataset_dir, COLUMNS)):
        if features is None:
            features = episode_features(rows[0], fps, video)
        cameras = [k for k in IMAGE_KEYS if IMAGE_KEYS[k] in features]
        shape = features[IMAGE_KEYS["image"]]["shape"]
        for row in rows:
            if [row["image_height"], row["image_width"], 3] != shape:
                raise ExportError(f"{row['episode_id']} step {row['step']}: frame size "
                                  f"{row['image_width']}x{row['image_height']} differs from "
                                  f"the first frame's; LeRobot needs one size")
            for k in cameras:
                if image_bytes(row[k]) is None:
                    raise ExportError(f"{row['episode_id']} step {row['step']}: no {k}, but "
                                      f"the dataset's first frame has one")
        n, task = len(rows), rows[0]["instruction"]
        task_index = tasks.setdefault(task, len(tasks))
        frame_index = np.arange(n, dtype=np.int64)
        numeric = {
            "observation.state": np.asarray([r["state"] for r in rows], np.float32).reshape(n, -1),
            "action": np.asarray([r["action"] for r in rows], np.float32),
            "timestamp": (frame_index / fps).astype(np.float32), "frame_index": frame_index,
            "episode_index": np.full(n, episode_index, np.int64),
            "index": np.arange(index, index + n, dtype=np.int64),
            "task_index": np.full(n, task_index, np.int64)}
        encoded = {IMAGE_KEYS[k]: [image_bytes(r[k]) for r in rows] for k in cameras}
        decoded = {key: [np.asarray(load_image(b).convert("RGB")) for b in frames]
                   for key, frames in encoded.items()}
        yield LeRobotEpisode(episode_index, rows[0]["episode_id"], task, numeric, encoded,
                             decoded), features
        index += n


def episode_features(row: dict[str, Any], fps: float, video: bool) -> dict[str, Any]:
    height, width = row["image_height"], row["image_width"]
    if video and (height % 2 or width % 2):
        raise ExportError(f"frames are {width}x{height}; mp4 (yuv420p) needs an even width and "
                          f"height: export with --lerobot-images")
    camera: dict[str, Any] = {"dtype": "video" if video else "image", "shape": [height, width, 3],
                              "names": ["height", "width", "channels"]}
    features = {IMAGE_KEYS[k]: dict(camera) for k in IMAGE_KEYS if image_bytes(row[k]) is not None}
    features["observation.state"] = {"dtype": "float32", "shape": [len(row["state"])],
                                     "names": None}
    features["action"] = {"dtype": "float32", "shape": [len(row["action"])], "names": None}
    features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
    features.update({k: {"dtype": "int64", "shape": [1], "names": None} for k in INDEX_FEATURES})
    return features


def video_info(features: dict[str, Any], fps: float, codec: str) -> None:
    """LeRobot's `info` block of each video feature."""
    for ft in features.values():
        if ft["dtype"] == "video":
            ft["info"] = {"video.height": ft["shape"][0], "video.width": ft["shape"][1],
                          "video.codec": CODECS[codec][1], "video.pix_fmt": "yuv420p",
                          "video.is_depth_map": False, "video.fps": fps, "video.channels": 3,
                          "has_audio": False}


def write_json(out: str, rel: str, value: Any) -> None:
    path = os.path.join(out, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def write_lines(out: str, rel: str, values: list[dict[str, Any]]) -> None:
    with open(os.path.join(out, rel), "w") as f:
        f.writelines(json.dumps(v) + "\n" for v in values)


def write_card(out: str, manifest: dict[str, Any], version: str, frames: int) -> None:
    """README.md (the Hub card: the build config's license, LeRobot's tag and data files) and,
    for license "other", the LICENSE.md it links."""
    license = hub_license(None, manifest["config"])
    front = {"license": license, "task_categories": ["robotics"], "language": ["en"],
             "size_categories": [size_category(frames)], "tags": ["LeRobot", "armdata"],
             "configs": [{"config_name": "default", "data_files": "data/*/*.parquet"}]}
    if license == "other":
        front.update(license_name=f"{manifest['config']['name'].lower().replace('_', '-')}"
                                  f"-source-license", license_link=LICENSE_PATH)
        with open(os.path.join(out, LICENSE_PATH), "w") as f:
            f.write(license_text(manifest))
    source = manifest["source"]
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n"
                f"LeRobot {version} dataset exported by armdata {manifest['armdata_version']} "
                f"from a build of `{source['builder_name']}` {source['version']} (config "
                f"`{manifest['config']['name']}`, stages {', '.join(manifest['stages'])}). Load "
                f"it with `LeRobotDataset(repo_id)`; `armdata push` tags the repo `{version}`.\n")


def export_lerobot(dataset_dir: str, out: str, lerobot_version: str = "3.0",
                   lerobot_video: bool | None = None, lerobot_codec: str = "h264"
                   ) -> dict[str, Any]:
    """Write the build as a LeRobot dataset of `lerobot_version` ("3.0" or "2.1"); cameras as
    video by default for 3.0, as images for 2.1 (what MolmoAct's preprocessing reads)."""
    from armdata.exports import lerobot_v21, lerobot_v30

    version = "v" + lerobot_version.lstrip("v")
    if version not in VERSIONS:
        raise ExportError(f"--lerobot-version {lerobot_version}: choose 3.0 or 2.1")
    video = version == "v3.0" if lerobot_video is None else lerobot_video
    manifest = load_manifest(dataset_dir)
    fps = export_fps(manifest, dataset_dir)
    require_empty(out)
    writer = lerobot_v30.write if version == "v3.0" else lerobot_v21.write
    summary = writer(read_episodes(dataset_dir, fps, video), out, fps, lerobot_codec)
    if not summary:
        raise ExportError(f"{dataset_dir} has no rows to export")
    write_card(out, manifest, version, summary["frames"])
    log.info("wrote LeRobot %s to %s: %s", version, out, summary)
    return {"format": "lerobot", "version": version, "out": out, "fps": fps,
            "cameras": "video" if video else "images", **summary}
