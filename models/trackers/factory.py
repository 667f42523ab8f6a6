"""A tracker from its name: the one switch behind the trace stage's `--tracker` and `armdata
track --tracker`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from armdata.models.trackers import AffineTracker, CoTrackerTracker, LKTracker, cotracker_from_hub

TRACKERS = ("affine", "lk", "cotracker3")   # the names --tracker takes; affine is the default
LEARNED_TRACKERS = ("cotracker3",)          # models: they run on a device and load once per process


@dataclass(frozen=True)
class TrackerOptions:
    """How a learned tracker is loaded (see `transforms.trace.add_model_arguments`); the others
    take no option."""
    cotracker_repo: str | None = None
    cotracker_offline_max_frames: int = 200
    trust_cotracker_code: bool = False


def make_tracker(name: str, options: TrackerOptions = TrackerOptions(), device: Any = None
                 ) -> AffineTracker | LKTracker | CoTrackerTracker:
    """The tracker called `name` (one of TRACKERS); a learned one is loaded on `device`."""
    if name == "affine":
        return AffineTracker()
    if name == "lk":
        return LKTracker()
    if name == "cotracker3":
        return cotracker_from_hub(options.cotracker_repo, device,
                                  options.cotracker_offline_max_frames,
                                  options.trust_cotracker_code)
    raise ValueError(f"tracker must be one of {TRACKERS}, got {name!r}")
