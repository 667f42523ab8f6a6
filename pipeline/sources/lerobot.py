"""LeRobot source (format v2.1 and v3.0, detected by `meta/info.json`): plan the read on the
launcher (fail fast: version, split, files), then read one Beam element per episode on the workers
into the same raw dict the RLDS reader emits, so `Standardize` and every stage apply unchanged:

    {"tfds_id": "<dataset>/episode_<index>", "steps": {key: (T, ...) array},
     "episode_metadata": {...}}

Step keys are the LeRobot feature names (`action`, `observation.state`, `observation.images.X`,
`timestamp`, ...) plus `task` (the episode's task string per frame, from `task_index`), so a
config maps them like any other source (`instruction_key: task`). Frames of `image` features are
the encoded bytes stored in the Parquet; frames of `video` features are decoded with PyAV (AV1,
h264, ...) at each frame's timestamp into uint8 (T, H, W, 3).

Format facts (LeRobot's `info.json`): v2.1 keeps one Parquet and one mp4 per camera per episode at
`data_path` / `video_path` templates with `{episode_chunk}` = episode_index // chunks_size, and
episode lengths and tasks in `meta/episodes.jsonl` / `meta/tasks.jsonl`; v3.0 packs many episodes
per file (`{chunk_index}`/`{file_index}` templates) and lists for each episode its data file, its
rows (`dataset_from_index`..`dataset_to_index`) and per camera its video file and start time
(`videos/<key>/from_timestamp`) in `meta/episodes/*/*.parquet`, with tasks in `meta/tasks.parquet`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from armdata.pipeline.sinks import storage
from armdata.pipeline.sources.rlds import SourceError

log = logging.getLogger(__name__)

VERSIONS = ("v2.1", "v3.0")


@dataclass(frozen=True)
class EpisodeRead:
    """Where one episode's frames are: rows [start, stop) of a data file (by `index` in v3.0,
    the whole file in v2.1) and, per video camera, (mp4 path, start time in that file)."""
    episode_index: int
    data_file: str
    start: int | None
    stop: int | None
    videos: tuple[tuple[str, str, float], ...]
    length: int


@dataclass(frozen=True)
class EpisodeSlice:
    """Positions [start, stop) in the plan's episode list: one Beam element."""
    start: int
    stop: int


@dataclass(frozen=True)
class LeRobotPlan:
    directory: str
    builder_name: str          # the dataset folder's name
    version: str               # codebase_version
    split: str
    max_episodes: int | None
    num_episodes: int
    fps: float
    tasks: tuple[str, ...]     # task_index → task
    image_keys: tuple[str, ...]
    video_keys: tuple[str, ...]
    reads: tuple[EpisodeSlice, ...]
    # Launcher only: workers list the episodes again in setup() (`select_episodes`), so the graph
    # carries small slices, not millions of paths (Dataflow bounds the job graph's size).
    episodes: tuple[EpisodeRead, ...] = ()


# Beam elements; the read is fused with the stages, so this bounds the job's parallelism.
MAX_SLICES = 4096


def is_lerobot(directory: str) -> bool:
    return storage.exists(storage.join(directory, "meta", "info.json"))


def _json(directory: str, rel: str) -> Any:
    try:
        return json.loads(storage.read_bytes(storage.join(directory, rel)))
    except Exception as exc:
        raise SourceError(f"{directory}: cannot read {rel}: {exc}") from exc


def _jsonl(directory: str, rel: str) -> list[dict[str, Any]]:
    try:
        text = storage.read_bytes(storage.join(directory, rel)).decode()
    except Exception as exc:
        raise SourceError(f"{directory}: cannot read {rel}: {exc}") from exc
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _parquet(directory: str, rel: str) -> pa.Table:
    with storage.open_read(storage.join(directory, rel)) as f:
        return pq.read_table(f)


def split_range(info: dict[str, Any], split: str, directory: str) -> range:
    splits = info.get("splits") or {"train": f"0:{info['total_episodes']}"}
    if split not in splits:
        raise SourceError(f"bad split {split!r} for {directory} (splits: {', '.join(splits)})")
    start, stop = (int(v) for v in str(splits[split]).split(":"))
    return range(start, stop)


def select_episodes(directory: str, split: str, max_episodes: int | None
                    ) -> tuple[dict[str, Any], tuple[str, ...], list[EpisodeRead]]:
    """info.json, the tasks and the split's episodes in index order (first `max_episodes`)."""
    info = _json(directory, "meta/info.json")
    version = info.get("codebase_version")
    if version not in VERSIONS:
        raise SourceError(f"{directory}: LeRobot codebase_version {version!r} is not supported "
                          f"(supported: {', '.join(VERSIONS)})")
    video_keys = tuple(k for k, f in (info.get("features") or {}).items()
                       if f.get("dtype") == "video")
    wanted = split_range(info, split, directory)
    plan_episodes = _plan_v21 if version == "v2.1" else _plan_v30
    tasks, reads = plan_episodes(directory, info, video_keys)
    reads = sorted((r for r in reads if r.episode_index in wanted), key=lambda r: r.episode_index)
    return info, tasks, reads[:max_episodes] if max_episodes is not None else reads


def plan_lerobot(directory: str, split: str, max_episodes: int | None) -> LeRobotPlan:
    """Read LeRobot's metadata and plan the episodes to read. Raises SourceError naming what is
    wrong (unsupported version, unknown split, missing files)."""
    directory = directory.rstrip("/")
    info, tasks, reads = select_episodes(directory, split, max_episodes)
    present = {p[len(directory) + 1:] for p in storage.list_files(directory)}
    for path in sorted({r.data_file for r in reads} | {v[1] for r in reads for v in r.videos}):
        if path not in present:
            raise SourceError(f"{directory}: {path} listed in the LeRobot metadata is missing")
    features = info.get("features") or {}
    size = max(1, -(-len(reads) // MAX_SLICES))
    return LeRobotPlan(
        directory, directory.rsplit("/", 1)[-1], info["codebase_version"], split, max_episodes,
        len(reads), float(info["fps"]), tasks,
        tuple(k for k, f in features.items() if f.get("dtype") == "image"),
        tuple(k for k, f in features.items() if f.get("dtype") == "video"),
        tuple(EpisodeSlice(i, min(i + size, len(reads))) for i in range(0, len(reads), size)),
        tuple(reads))


def _plan_v21(directory: str, info: dict[str, Any],
              video_keys: tuple[str, ...]) -> tuple[tuple[str, ...], list[EpisodeRead]]:
    task_rows = _jsonl(directory, "meta/tasks.jsonl")
    tasks = [""] * (max((t["task_index"] for t in task_rows), default=-1) + 1)
    for t in task_rows:
        tasks[t["task_index"]] = t["task"]
    chunk = int(info.get("chunks_size", 1000))
    reads = []
    for ep in _jsonl(directory, "meta/episodes.jsonl"):
        i = int(ep["episode_index"])
        keys = {"episode_chunk": i // chunk, "episode_index": i}
        videos = tuple((k, info["video_path"].format(video_key=k, **keys), 0.0)
                       for k in video_keys)
        reads.append(EpisodeRead(i, info["data_path"].format(**keys), None, None, videos,
                                 int(ep["length"])))
    return tuple(tasks), reads


def _plan_v30(directory: str, info: dict[str, Any],
              video_keys: tuple[str, ...]) -> tuple[tuple[str, ...], list[EpisodeRead]]:
    table = _parquet(directory, "meta/tasks.parquet")
    # pandas writes the task strings as the index column
    name = "task" if "task" in table.column_names else "__index_level_0__"
    if name not in table.column_names or "task_index" not in table.column_names:
        raise SourceError(f"{directory}: meta/tasks.parquet lacks task strings or task_index "
                          f"(columns {table.column_names})")
    tasks = [""] * (max(table.column("task_index").to_pylist(), default=-1) + 1)
    for task, index in zip(table.column(name).to_pylist(), table.column("task_index").to_pylist()):
        tasks[index] = task
    files = sorted(p for p in storage.list_files(storage.join(directory, "meta", "episodes"))
                   if p.endswith(".parquet"))
    if not files:
        raise SourceError(f"{directory}: no meta/episodes/*/*.parquet (LeRobot v3.0 episodes)")
    reads = []
    for path in files:
        with storage.open_read(path) as f:
            rows = pq.read_table(f).to_pylist()
        for ep in rows:
            keys = {"chunk_index": ep["data/chunk_index"], "file_index": ep["data/file_index"]}
            videos = tuple((k, info["video_path"].format(
                video_key=k, chunk_index=ep[f"videos/{k}/chunk_index"],
                file_index=ep[f"videos/{k}/file_index"]), float(ep[f"videos/{k}/from_timestamp"]))
                for k in video_keys)
            reads.append(EpisodeRead(int(ep["episode_index"]), info["data_path"].format(**keys),
                                     int(ep["dataset_from_index"]), int(ep["dataset_to_index"]),
                                     videos, int(ep["length"])))
    return tuple(tasks), reads


def decode_video(path: str, timestamps: np.ndarray, fps: float) -> np.ndarray:
    """Frames of an mp4 at the given times (seconds) → uint8 (T, H, W, 3). Seeks to the keyframe
    before the first time and decodes forward; each time takes the frame nearest to it, which must
    lie within half a frame period."""
    import av

    if len(timestamps) == 0:
        return np.zeros((0, 0, 0, 3), np.uint8)
    tolerance = 0.5 / fps
    with storage.open_read(path) as f, av.open(f) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = float(timestamps.min()) - tolerance
        container.seek(max(0, int(start / stream.time_base)), stream=stream, backward=True)
        times, frames = [], []
        for frame in container.decode(stream):
            if frame.time is None or frame.time < start:
                continue
            times.append(frame.time)
            frames.append(frame.to_ndarray(format="rgb24"))
            if frame.time > timestamps.max() + tolerance:
                break
    if not frames:
        raise SourceError(f"{path}: no frames decoded at or after {start:.3f} s")
    times = np.asarray(times)
    nearest = np.abs(times[None, :] - timestamps[:, None]).argmin(1)
    off = np.abs(times[nearest] - timestamps)
    if off.max() > tolerance:
        bad = int(off.argmax())
        raise SourceError(f"{path}: no frame within {tolerance:.4f} s of t={timestamps[bad]:.4f} s "
                          f"(nearest {times[nearest[bad]]:.4f} s)")
    return np.stack([frames[i] for i in nearest])


def episode_steps(table: pa.Table, plan: LeRobotPlan, read: EpisodeRead) -> dict[str, Any]:
    """One episode's Parquet rows (any order) and videos → flat step arrays, frames in order."""
    table = table.sort_by("frame_index")
    steps: dict[str, Any] = {}
    for name in table.column_names:
        column = table.column(name)
        if name in plan.image_keys:
            frames = np.empty(len(column), object)
            frames[:] = [None if c is None else c["bytes"] for c in column.to_pylist()]
            steps[name] = frames
        elif pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
            steps[name] = np.asarray(column.to_pylist(), np.float32)
        else:
            steps[name] = column.to_numpy()
    tasks = np.empty(table.num_rows, object)
    tasks[:] = [plan.tasks[i] for i in steps["task_index"]]
    steps["task"] = tasks
    if "next.done" in steps:
        steps["is_terminal"] = steps["next.done"]
    for key, path, offset in read.videos:
        steps[key] = decode_video(storage.join(plan.directory, path),
                                  offset + steps["timestamp"].astype(np.float64), plan.fps)
    return steps


class ReadLeRobotEpisode(beam.DoFn):
    """EpisodeSlice → raw episodes `{"tfds_id", "steps", "episode_metadata"}`."""

    def __init__(self, plan: LeRobotPlan) -> None:
        self.plan = replace(plan, reads=(), episodes=())

    def setup(self) -> None:
        self.episodes = select_episodes(self.plan.directory, self.plan.split,
                                        self.plan.max_episodes)[2]
        self.counter = beam.metrics.Metrics.counter("read", "episodes")

    def process(self, piece: EpisodeSlice) -> Iterator[dict[str, Any]]:
        for read in self.episodes[piece.start:piece.stop]:
            yield self.read_episode(read)
            self.counter.inc()

    def read_episode(self, read: EpisodeRead) -> dict[str, Any]:
        # v3.0 files hold many episodes: the filter skips row groups by their statistics
        rows = [("index", ">=", read.start), ("index", "<", read.stop)] \
            if read.start is not None else [("episode_index", "=", read.episode_index)]
        with storage.open_read(storage.join(self.plan.directory, read.data_file)) as f:
            table = pq.read_table(f, filters=rows)
        steps = episode_steps(table, self.plan, read)
        return {"tfds_id": f"{self.plan.builder_name}/episode_{read.episode_index:06d}",
                "steps": steps,
                "episode_metadata": {"episode_index": read.episode_index,
                                     "tasks": sorted({str(t) for t in steps["task"]}),
                                     "length": read.length, "lerobot_version": self.plan.version}}
