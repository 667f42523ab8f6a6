"""Trace stage: gripper position per step and the visual trace (SPEC §3).

Per arm of the config: the localizer finds the gripper on a seed frame (the first frame where it
finds anything), the tracker follows it through the episode (forwards and backwards), asking the
localizer where it is unsure, and each step's trace is built from the visible positions of the
steps from it to the end of the episode. The state guide (`models/state_guide.py`, on by default)
fits the state's end-effector xyz to the confirmed positions: the tracker looks where it predicts
before asking the localizer, and a whole-episode fit refines the visible positions where it
explains them to tracking noise. A step where the gripper is not seen keeps the best
position estimate (the localizer's, else the tracker's) with `gripper_visible` false. With
`--tracker none` the localizer runs on every frame (the reference behaviour). An episode where
nothing can be localized keeps its steps with null traces and a counted reason: the other columns
are still good training data.
"""
from __future__ import annotations

import argparse
import bisect
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from armdata.models.device import DEVICE_CHOICES, resolve_device
from armdata.models.provenance import describe_file, describe_model
from armdata.models.localizers import DEFAULT_POINTING_MODEL, Clip, FitLocalizer, Localizer, \
    ManualLocalizer, PointingLocalizer, ProjectionLocalizer, arm_xyz, load_manual_points, \
    load_pointing_model
from armdata.models.state_guide import StateGuide, refine_with_fit
from armdata.models.trackers import AffineTracker, check_cotracker_source
from armdata.models.trackers.factory import LEARNED_TRACKERS, TRACKERS as TRACKER_NAMES, \
    TrackerOptions, make_tracker
from armdata.schemas.config import ArmConfig, CameraConfig, ConfigError, DatasetConfig
from armdata.schemas.episode import DataError, Episode, Rejection, decode_rgb
from armdata.transforms.base import Stage, shared_model
from armdata.schemas.columns import normalize_point

log = logging.getLogger(__name__)

LOCALIZERS = ("projection", "fit", "pointing", "manual")
TRACKERS = (*TRACKER_NAMES, "none")   # none: the localizer on every frame
MAX_TRACE_POINTS = 5


# --- pure trace math ---------------------------------------------------------------------------

def trace_indices(valid_steps: Sequence[int], i: int) -> list[int]:
    """Which positions make step i's trace. `valid_steps` are the sorted positions with a valid
    (visible) gripper. From i to the end: all if at most 5, else 5 at
    `linspace(0, m-1, 5).astype(int)`; if none, the last valid position before i; else []."""
    start = bisect.bisect_left(valid_steps, i)
    future = valid_steps[start:]
    if len(future) > MAX_TRACE_POINTS:
        return [future[j] for j in np.linspace(0, len(future) - 1, MAX_TRACE_POINTS).astype(int)]
    if future:
        return list(future)
    return [valid_steps[start - 1]] if start > 0 else []


def episode_traces(xy: np.ndarray, valid: np.ndarray, width: int, height: int
                   ) -> list[list[list[int]]] | None:
    """Every step's trace (0..255 points) from per-step positions; None when no step is valid."""
    valid_steps = [int(i) for i in np.flatnonzero(valid)]
    if not valid_steps:
        return None
    norm = {i: normalize_point(float(xy[i, 0]), float(xy[i, 1]), width, height)
            for i in valid_steps}
    return [[norm[j] for j in trace_indices(valid_steps, i)] for i in range(len(valid))]


def trace_error(gripper_xy: np.ndarray, gt_xy: np.ndarray, visible: np.ndarray) -> dict[str, float]:
    """Tracking error against ground truth on the frames where the ground truth is visible:
    mean/median/max pixel distance (frames without an estimate count as missing), and the
    fractions of frames reported visible and of ground-truth-visible frames reported visible."""
    est = np.asarray(gripper_xy, np.float64).reshape(-1, 2)
    gt = np.asarray(gt_xy, np.float64).reshape(-1, 2)
    vis = np.asarray(visible, bool)
    if est.shape != gt.shape or vis.shape != (len(gt),):
        raise ValueError(f"shapes differ: estimate {est.shape}, truth {gt.shape}, "
                         f"visible {vis.shape}")
    dist = np.linalg.norm(est - gt, axis=1)
    measured = vis & np.isfinite(dist)
    d = dist[measured]
    return {"mean_px": float(d.mean()) if d.size else float("nan"),
            "median_px": float(np.median(d)) if d.size else float("nan"),
            "max_px": float(d.max()) if d.size else float("nan"),
            "frames": int(len(gt)), "frames_measured": int(measured.sum()),
            "missing": int((vis & ~np.isfinite(dist)).sum())}


def trace_scores(xy: np.ndarray, visible: np.ndarray, gt_xy: np.ndarray, gt_visible: np.ndarray,
                 width: int, height: int) -> dict[str, float]:
    """The written traces (SPEC §3, 0..255) against those the ground truth gives by the same
    rule: `identical` = share of steps with the same trace, `same_length` = share with the
    same number of points, `mean_units` = mean distance of corresponding points on those
    (NaN when none). Traces depend on which steps count as visible as much as on positions."""
    ours = episode_traces(np.asarray(xy, np.float64), np.asarray(visible, bool), width, height)
    truth = episode_traces(np.asarray(gt_xy, np.float64), np.asarray(gt_visible, bool), width,
                           height)
    ours = ours or [[] for _ in range(len(xy))]
    truth = truth or [[] for _ in range(len(gt_xy))]
    pairs = [(a, b) for a, b in zip(ours, truth) if len(a) == len(b)]
    dist = [float(np.hypot(p[0] - q[0], p[1] - q[1])) for a, b in pairs for p, q in zip(a, b)]
    return {"identical": float(np.mean([a == b for a, b in zip(ours, truth)])),
            "same_length": len(pairs) / len(truth) if truth else float("nan"),
            "mean_units": float(np.mean(dist)) if dist else float("nan"),
            "points": len(dist)}


def tracking_scores(xy: np.ndarray, reported_visible: np.ndarray, gt_xy: np.ndarray,
                    gt_visible: np.ndarray, within_px: float = 4.0) -> dict[str, float]:
    """How well a tracker did against ground truth: `within` = the share of truly visible frames
    reported visible and within `within_px`; `hidden` = the share of covered frames reported
    not visible (1 when none is covered); mean/max pixel error on the truly visible frames
    reported visible (NaN when none)."""
    dist = np.linalg.norm(np.asarray(xy, np.float64) - np.asarray(gt_xy, np.float64), axis=1)
    reported, truth = np.asarray(reported_visible, bool), np.asarray(gt_visible, bool)
    seen = truth & reported
    return {"within": float((seen & (dist <= within_px))[truth].mean()) if truth.any()
            else float("nan"),
            "hidden": float((~reported)[~truth].mean()) if (~truth).any() else 1.0,
            "mean_px": float(dist[seen].mean()) if seen.any() else float("nan"),
            "max_px": float(dist[seen].max()) if seen.any() else float("nan")}


# --- localize + track ----------------------------------------------------------------------------

class CountingLocalizer:
    """A localizer that counts the frames it is asked about (the cost a tracker saves)."""

    def __init__(self, localizer: Localizer) -> None:
        self.localizer, self.batch_size, self.frames = localizer, localizer.batch_size, 0
        self.precise = localizer.precise

    def locate(self, clip: Clip, arm: ArmConfig, indices: Sequence[int]
               ) -> tuple[np.ndarray, np.ndarray]:
        indices = list(indices)
        self.frames += len(indices)
        return self.localizer.locate(clip, arm, indices)


def find_seed(localizer: Localizer, clip: Clip, arm: ArmConfig, chunk: int
              ) -> tuple[int, tuple[float, float]] | None:
    """The first frame where the localizer finds the gripper, scanning `chunk` frames per call."""
    T = len(clip.frames)
    starts = [0] + list(range(1, T, max(1, chunk)))   # the first frame alone: it usually has it
    for start in starts:
        indices = list(range(start, min(T, start + (1 if start == 0 else max(1, chunk)))))
        xy, found = localizer.locate(clip, arm, indices)
        hits = np.flatnonzero(found)
        if hits.size:
            j = int(hits[0])
            return indices[j], (float(xy[j, 0]), float(xy[j, 1]))
    return None


def state_xyz(clip: Clip, arm: ArmConfig) -> np.ndarray | None:
    """The arm's end-effector xyz per frame for the state guide, or None when the state does
    not have it (then tracking goes without the guide)."""
    try:
        return arm_xyz(clip.states, arm)
    except DataError:
        return None


def localize_and_track(localizer: Localizer, tracker: Any, clip: Clip, arm: ArmConfig,
                       state_guide: bool = True) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(xy (T, 2), visible (T,), positions replaced by the state fit) for one arm, or None when
    the localizer finds nothing. With `state_guide`, a tracker that takes a guide is told where
    the state xyz puts the gripper (`armdata.models.state_guide`), and the visible positions are
    replaced by a whole-episode fit of the state where it explains them to tracking noise."""
    T = len(clip.frames)
    if tracker is None:   # the localizer on every frame
        xy, found = localizer.locate(clip, arm, range(T))
        return (xy, found, 0) if found.any() else None
    seed = find_seed(localizer, clip, arm, min(T, localizer.batch_size))
    if seed is None:
        return None

    def reseed(t: int) -> tuple[float, float] | None:
        xy, found = localizer.locate(clip, arm, [t])
        return (float(xy[0, 0]), float(xy[0, 1])) if found[0] else None

    xyz = state_xyz(clip, arm) if state_guide else None
    if isinstance(tracker, AffineTracker):   # the tracker that takes a guide
        guide = None if xyz is None else StateGuide(xyz, *clip.size)
        xy, visible = tracker.track(clip.frames, seed[0], seed[1], reseed, guide=guide,
                                    precise=localizer.precise)
    else:
        xy, visible = tracker.track(clip.frames, seed[0], seed[1], reseed)
    refined = None if xyz is None else refine_with_fit(xyz, xy, visible)
    if refined is None:
        return xy, visible, 0
    return refined[0], visible, int(refined[1].sum())


# --- the stage -----------------------------------------------------------------------------------

class TraceStage(Stage):
    name = "trace"

    def __init__(self, localizer: str = "projection", tracker: str = "affine",
                 camera: CameraConfig | None = None, arms: Sequence[ArmConfig] = (ArmConfig(),),
                 pointing_model: str = DEFAULT_POINTING_MODEL, trust_remote_code: bool = False,
                 pointing_batch_size: int = 8, manual_points: str | None = None,
                 fit_frames: int = 16, fit_threshold: float = 4.0,
                 cotracker_repo: str | None = None, cotracker_offline_max_frames: int = 200,
                 trust_cotracker_code: bool = False, state_guide: bool = True, device: str = "auto") -> None:
        super().__init__()
        if localizer not in LOCALIZERS:
            raise ValueError(f"localizer must be one of {LOCALIZERS}, got {localizer!r}")
        if tracker not in TRACKERS:
            raise ValueError(f"tracker must be one of {TRACKERS}, got {tracker!r}")
        if localizer == "projection" and camera is None:
            raise ValueError("--localizer projection needs `camera` in the dataset config")
        if localizer == "manual" and not manual_points:
            raise ValueError("--localizer manual needs --manual-points PATH")
        if pointing_batch_size < 1 or fit_frames < 6:
            raise ValueError("pointing batch size must be ≥ 1 and fit frames ≥ 6")
        if device not in DEVICE_CHOICES:
            raise ValueError(f"trace device must be one of {DEVICE_CHOICES}, got {device!r}")
        if not arms:
            raise ValueError("at least one arm is needed")
        self.localizer_name, self.tracker_name = localizer, tracker
        self.camera, self.arms = camera, tuple(arms)
        self.pointing_model, self.trust_remote_code = pointing_model, trust_remote_code
        self.pointing_batch_size, self.manual_points = pointing_batch_size, manual_points
        self.fit_frames, self.fit_threshold = fit_frames, fit_threshold
        self.cotracker_repo = cotracker_repo
        self.cotracker_offline_max_frames = cotracker_offline_max_frames
        self.trust_cotracker_code = trust_cotracker_code
        self.state_guide, self.device = state_guide, device
        self._localizer: Localizer | None = None
        self._tracker: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # Models never travel with the pipeline: each worker builds them in setup().
        state = self.__dict__.copy()
        state.update(_localizer=None, _tracker=None)
        return state

    def setup(self) -> None:
        needs_torch = (self.localizer_name in ("pointing", "fit")
                       or self.tracker_name in LEARNED_TRACKERS)
        device = resolve_device(self.device, "trace models") if needs_torch else None
        self._localizer = self._make_localizer(device)
        if self.tracker_name in LEARNED_TRACKERS:   # a model: loaded once per process
            options = TrackerOptions(self.cotracker_repo, self.cotracker_offline_max_frames,
                                     self.trust_cotracker_code)
            self._tracker = shared_model((self.tracker_name, options, str(device)),
                                         lambda: make_tracker(self.tracker_name, options, device))
        elif self.tracker_name != "none":
            self._tracker = make_tracker(self.tracker_name)

    offline = "--localizer projection (calibrated camera) or --localizer manual --manual-points FILE"

    def models(self) -> dict[str, Any]:
        return {"--pointing-model": self.pointing_model} \
            if self.localizer_name in ("pointing", "fit") else {}

    def options(self) -> dict[str, Any]:
        """Localizer and tracker with their models or files (manual points are parsed here)."""
        out: dict[str, Any] = {"localizer": self.localizer_name, "tracker": self.tracker_name,
                               "state_guide": self.state_guide}
        if self.localizer_name in ("pointing", "fit"):
            out["pointing_model"] = describe_model(self.pointing_model, "--pointing-model")
            out["trust_remote_code"] = self.trust_remote_code
            out["pointing_batch_size"] = self.pointing_batch_size
        if self.localizer_name == "fit":
            out.update(fit_frames=self.fit_frames, fit_threshold=self.fit_threshold)
        if self.localizer_name == "manual":
            out["manual_points"] = describe_file(self.manual_points, "--manual-points")
            out["manual_points"]["points"] = len(load_manual_points(self.manual_points))
        if self.tracker_name == "cotracker3":
            if self.cotracker_repo is not None and not Path(self.cotracker_repo).is_dir():
                raise ValueError(f"--cotracker-repo {self.cotracker_repo} is not a directory")
            check_cotracker_source(self.cotracker_repo, self.trust_cotracker_code)
            out["cotracker"] = {"repo": self.cotracker_repo or "torch.hub facebookresearch/"
                                "co-tracker", "offline_max_frames":
                                self.cotracker_offline_max_frames,
                                "trust_code": self.trust_cotracker_code}
        return out

    def _make_localizer(self, device: Any) -> Localizer:
        if self.localizer_name == "projection":
            return ProjectionLocalizer(self.camera)
        if self.localizer_name == "manual":
            return ManualLocalizer(load_manual_points(self.manual_points))
        model, processor = shared_model(
            ("pointing", self.pointing_model, self.trust_remote_code, str(device)),
            lambda: load_pointing_model(self.pointing_model, device, self.trust_remote_code))
        pointing = PointingLocalizer(model, processor, self.pointing_batch_size, len(self.arms))
        if self.localizer_name == "pointing":
            return pointing
        return FitLocalizer(pointing, self.fit_frames, self.fit_threshold)

    def process(self, episode: Episode) -> tuple[Episode | None, list[Rejection]]:
        if not episode.steps:
            return episode, []
        clip = self._clip(episode)
        if clip is None:
            return episode, []
        width, height = clip.size
        per_arm = []
        for arm in self.arms:
            localizer = CountingLocalizer(self._localizer)
            try:
                result = localize_and_track(localizer, self._tracker, clip, arm,
                                            self.state_guide)
            except DataError as exc:   # bad calibration/state for this episode: null traces
                log.warning("trace %s/%s: %s", episode.episode_id, arm.name, exc)
                self.count("trace_localizer_error")
                result = None
            self.count("localizer_calls", localizer.frames)   # frames the localizer looked at
            self.count("frames", len(clip.frames))
            if result is None:
                self.count("trace_nothing_found")
                xy = np.full((len(clip.frames), 2), np.nan)
                visible = np.zeros(len(clip.frames), bool)
            else:
                xy, visible, fitted = result
                visible = visible & np.isfinite(xy).all(axis=1)
                self.count("state_fit_positions", fitted)
            per_arm.append((arm, xy, visible, episode_traces(xy, visible, width, height)))
        self._fill(episode, per_arm)
        return episode, []

    def _clip(self, episode: Episode) -> Clip | None:
        """Decoded frames of one size, or None (counted) when they cannot be tracked."""
        try:
            frames = [decode_rgb(s.image) for s in episode.steps]
        except DataError as exc:
            log.warning("trace %s: %s", episode.episode_id, exc)
            self.count("trace_frame_undecodable")
            return None
        if len({f.shape for f in frames}) != 1:
            self.count("trace_frame_size_varies")
            return None
        return Clip(episode.episode_id, np.stack(frames), episode.states(),
                    [s.index for s in episode.steps], episode.metadata)

    def _fill(self, episode: Episode, per_arm: list[tuple[ArmConfig, np.ndarray, np.ndarray,
                                                          list[list[list[int]]] | None]]) -> None:
        for i, step in enumerate(episode.steps):
            entries = []
            for arm, xy, visible, traces in per_arm:
                point = None if not np.isfinite(xy[i]).all() else (float(xy[i, 0]), float(xy[i, 1]))
                entries.append({"arm": arm.name,
                                "gripper_xy": None if point is None else list(point),
                                "gripper_visible": bool(visible[i]),
                                "trace": None if traces is None else traces[i]})
            first = entries[0]
            step.gripper_xy = None if first["gripper_xy"] is None else tuple(first["gripper_xy"])
            step.gripper_visible = first["gripper_visible"]
            step.trace = first["trace"]
            step.arm_traces = entries if len(entries) > 1 else None
            self.count("trace_steps")
            self.count("trace_steps_visible", int(first["gripper_visible"]))


def add_model_arguments(parser: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    """The pointing model's and CoTracker3's options, shared by the trace stage and `armdata
    track`: which model, and whether code that comes with it may run."""
    parser.add_argument("--pointing-model", default=DEFAULT_POINTING_MODEL,
                        help="transformers pointing VLM (Hub id or directory) for pointing/fit")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow the pointing model's own code (needed for Molmo)")
    parser.add_argument("--cotracker-repo",
                        help="local clone of facebookresearch/co-tracker (its code runs)")
    parser.add_argument("--trust-cotracker-code", action="store_true",
                        help="without --cotracker-repo: allow torch.hub to download and run "
                             "facebookresearch/co-tracker's code from GitHub")


def add_build_arguments(parser: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    parser.add_argument("--localizer", choices=LOCALIZERS, default=None,
                        help="how the gripper is found (default: projection when the config has a "
                             "camera, else pointing)")
    parser.add_argument("--tracker", choices=TRACKERS, default="affine",
                        help="how it is followed between frames (affine: appearance alignment "
                             "through turns, scale and light; lk: Lucas-Kanade; cotracker3; "
                             "none = localize every frame)")
    add_model_arguments(parser)
    parser.add_argument("--pointing-batch-size", type=int, default=8)
    parser.add_argument("--manual-points", help="JSON/CSV of points for --localizer manual")
    parser.add_argument("--fit-frames", type=int, default=16,
                        help="frames pointed at per episode by --localizer fit")
    parser.add_argument("--fit-threshold", type=float, default=4.0,
                        help="RANSAC inlier threshold (px) for --localizer fit")
    parser.add_argument("--cotracker-offline-max-frames", type=int, default=200,
                        help="longer episode halves use CoTracker3 online")
    parser.add_argument("--no-state-guide", dest="state_guide", action="store_false",
                        help="do not use the state's end-effector xyz to guide the affine "
                             "tracker and refine visible positions (see README)")
    parser.add_argument("--trace-device", choices=DEVICE_CHOICES, default="auto")


def stage_from_args(args: argparse.Namespace, config: DatasetConfig) -> TraceStage:
    localizer = args.localizer or ("projection" if config.camera is not None else "pointing")
    try:
        return TraceStage(localizer=localizer, tracker=args.tracker, camera=config.camera,
                          arms=config.arms, pointing_model=args.pointing_model,
                          trust_remote_code=args.trust_remote_code,
                          pointing_batch_size=args.pointing_batch_size,
                          manual_points=args.manual_points, fit_frames=args.fit_frames,
                          fit_threshold=args.fit_threshold, cotracker_repo=args.cotracker_repo,
                          cotracker_offline_max_frames=args.cotracker_offline_max_frames,
                          trust_cotracker_code=args.trust_cotracker_code,
                          state_guide=args.state_guide, device=args.trace_device)
    except ValueError as exc:
        raise ConfigError(f"trace stage ({config.name}): {exc}") from exc
