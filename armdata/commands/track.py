"""`armdata track FRAMES`: follow one point through a video or a directory of frames.

The point is given in pixels at frame T (`--point X,Y --frame T`), or found there by a pointing
model (`--localizer pointing`). Tracking runs forwards and backwards from T. Prints one line per
frame, or with `--json` `{"tracks": [[x, y], ...], "visible": [bool, ...]}`.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from armdata.models.device import DEVICE_CHOICES, resolve_device
from armdata.models.localizers import Clip, PointingLocalizer, \
    load_pointing_model
from armdata.models.trackers import check_cotracker_source
from armdata.models.trackers.factory import LEARNED_TRACKERS, TRACKERS, TrackerOptions, make_tracker
from armdata.errors import UsageError
from armdata.schemas.config import ArmConfig
from armdata.transforms.trace import add_model_arguments

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class TrackError(UsageError):
    """Bad input for `armdata track`."""


def load_frames(path: str | Path) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB from a directory of images (sorted by name) or a video file."""
    path = Path(path)
    frames = []
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for file in files:
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                raise TrackError(f"cannot read image {file}")
            frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    elif path.is_file():
        capture = cv2.VideoCapture(str(path))
        try:
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        finally:
            capture.release()
    else:
        raise TrackError(f"{path} is neither a directory of images nor a video file")
    if not frames:
        raise TrackError(f"no frames in {path}")
    if len({f.shape for f in frames}) != 1:
        raise TrackError(f"frames in {path} differ in size")
    return np.stack(frames)


def parse_point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected X,Y in pixels, got {text!r}") from exc
    if not (math.isfinite(x) and math.isfinite(y)):
        raise argparse.ArgumentTypeError(f"expected finite X,Y in pixels, got {text!r}")
    return x, y


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "track", help="track one point through a video or a directory of frames",
        description="Track a point (pixels, at frame --frame) forwards and backwards through "
                    "FRAMES: a directory of images (sorted by name) or a video file.")
    p.add_argument("frames", help="directory of images or video file")
    p.add_argument("--point", type=parse_point, help="X,Y in pixels at --frame")
    p.add_argument("--frame", type=int, default=0, help="frame of the point (default 0)")
    p.add_argument("--tracker", choices=TRACKERS, default="affine",
                   help="affine (default): follows turns, scale, opening fingers and light "
                        "changes; lk: Lucas-Kanade; cotracker3: learned, needs its weights")
    p.add_argument("--localizer", choices=("pointing",),
                   help="find the point at --frame with a pointing model instead of --point")
    add_model_arguments(p)
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="device for the pointing model and CoTracker3")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def track(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    frames = load_frames(args.frames)
    if not 0 <= args.frame < len(frames):
        raise TrackError(f"--frame {args.frame} is outside the video (0..{len(frames) - 1})")
    if args.point is None and args.localizer is None:
        raise TrackError("give the point with --point X,Y (or find it with --localizer pointing)")
    if args.tracker == "cotracker3":
        check_cotracker_source(args.cotracker_repo, args.trust_cotracker_code)
    needs_torch = args.localizer is not None or args.tracker in LEARNED_TRACKERS
    device = resolve_device(args.device, "tracking models") if needs_torch else None
    reseed: Callable[[int], tuple[float, float] | None] | None = None
    point = args.point
    if args.localizer == "pointing":
        model, processor = load_pointing_model(args.pointing_model, device, args.trust_remote_code)
        localizer = PointingLocalizer(model, processor)
        clip = Clip(str(args.frames), frames, np.zeros((len(frames), 0), np.float32),
                    list(range(len(frames))))

        def locate(t: int) -> tuple[float, float] | None:
            xy, found = localizer.locate(clip, ArmConfig(), [t])
            return (float(xy[0, 0]), float(xy[0, 1])) if found[0] else None

        reseed = locate

        if point is None:
            point = reseed(args.frame)
            if point is None:
                raise TrackError(f"the pointing model found no gripper in frame {args.frame}")
    tracker = make_tracker(args.tracker, TrackerOptions(
        cotracker_repo=args.cotracker_repo, trust_cotracker_code=args.trust_cotracker_code), device)
    return tracker.track(frames, args.frame, point, reseed)


def run(args: argparse.Namespace) -> int:
    try:
        xy, visible = track(args)
    except (ValueError, RuntimeError) as exc:   # the tracker's and models' own checks
        raise UsageError(str(exc)) from exc
    if args.json:
        print(json.dumps({"tracks": [[round(float(x), 3), round(float(y), 3)] for x, y in xy],
                          "visible": [bool(v) for v in visible]}))
    else:
        for t, ((x, y), v) in enumerate(zip(xy, visible)):
            print(f"{t}\t{x:.2f}\t{y:.2f}\t{'visible' if v else 'occluded'}")
    return 0
