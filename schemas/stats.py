"""`dataset_statistics.json` (SPEC §4): per-dataset action and proprio statistics.

The file is keyed by dataset name, as OpenVLA and MolmoAct checkpoints ship it:
`{name: {"action": {mean, std, min, max, q01, q99, mask}, "proprio": {mean, std, min, max, q01,
q99}, "num_transitions": N, "num_trajectories": M}}`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

QUANTILES = (0.01, 0.99)


class StatsError(ValueError):
    """A statistics file is missing, malformed or lacks the dataset."""


class StatsAccumulator:
    """Collects one dataset's actions and states, episode by episode, for exact statistics.

    Quantiles must equal `numpy.quantile` over all values, which needs all values: the
    accumulator keeps them as float32 arrays, N × (7 + S) × 4 bytes for N transitions with S-d
    state (about 110 MB for 2M transitions of 7-d actions and 7-d state). It pickles as plain
    arrays, and `merge` concatenates, so a Beam CombineFn can wrap it directly. `finalize` sorts
    each column first, so the result does not depend on the order episodes arrived in.
    """

    def __init__(self) -> None:
        self.actions: list[np.ndarray] = []
        self.states: list[np.ndarray] = []
        self.num_trajectories = 0

    def add(self, actions: np.ndarray, states: np.ndarray) -> None:
        """Add one episode: actions (T, 7), states (T, S), S may be 0. An empty one adds nothing."""
        actions = np.asarray(actions, np.float32)
        states = np.asarray(states, np.float32)
        if actions.ndim != 2 or actions.shape[1] != 7:
            raise ValueError(f"actions must have shape (T, 7), got {actions.shape}")
        if states.ndim != 2 or len(states) != len(actions):
            raise ValueError(f"states must have shape (T={len(actions)}, S), got {states.shape}")
        if not (np.isfinite(actions).all() and np.isfinite(states).all()):
            raise ValueError("actions or states contain NaN or infinite values")
        if len(actions) == 0:
            return
        if self.states and states.shape[1] != self.states[0].shape[1]:
            raise ValueError(f"state has {states.shape[1]} dims, earlier episodes had "
                             f"{self.states[0].shape[1]}")
        self.actions.append(actions)
        self.states.append(states)
        self.num_trajectories += 1

    @staticmethod
    def merge(accumulators: Iterable[StatsAccumulator]) -> StatsAccumulator:
        """One accumulator holding everything the given ones hold (as one array each)."""
        merged = StatsAccumulator()
        parts = list(accumulators)
        actions = [a for acc in parts for a in acc.actions]
        states = [s for acc in parts for s in acc.states]
        if len({s.shape[1] for s in states}) > 1:
            raise ValueError(f"cannot merge statistics of states with different dims "
                             f"{sorted({s.shape[1] for s in states})}")
        if actions:
            merged.actions = [np.concatenate(actions)]
            merged.states = [np.concatenate(states)]
        merged.num_trajectories = sum(acc.num_trajectories for acc in parts)
        return merged

    def finalize(self, dataset: str, mask: Sequence[bool],
                 config_version: int = 1) -> dict[str, Any]:
        """`{dataset: {...}}` with plain Python numbers, ready for `dumps_stats`.
        `config_version` (the dataset config's `version`) is recorded so statistics of an older
        conversion are not applied to a newer one."""
        if not self.actions:
            raise ValueError(f"no transitions for dataset {dataset!r}: cannot compute action "
                             f"statistics (were all episodes rejected?)")
        if len(mask) != 7:
            raise ValueError(f"mask must have 7 entries, got {list(mask)}")
        actions = np.sort(np.concatenate(self.actions), axis=0)
        states = np.sort(np.concatenate(self.states), axis=0)
        action = column_stats(actions)
        action["mask"] = [bool(m) for m in mask]
        return {dataset: {"action": action, "proprio": column_stats(states),
                          "num_transitions": int(len(actions)),
                          "num_trajectories": int(self.num_trajectories),
                          "config_version": int(config_version)}}


def column_stats(values: np.ndarray) -> dict[str, list[float]]:
    """mean, std (population), min, max, q01, q99 of each column of (N, D) float32, as floats."""
    wide = values.astype(np.float64)
    if values.shape[1] == 0:
        return {k: [] for k in ("mean", "std", "min", "max", "q01", "q99")}
    stats = {"mean": wide.mean(axis=0), "std": wide.std(axis=0),
             "min": values.min(axis=0), "max": values.max(axis=0),
             "q01": np.quantile(values, QUANTILES[0], axis=0),
             "q99": np.quantile(values, QUANTILES[1], axis=0)}
    return {k: [float(x) for x in v] for k, v in stats.items()}


def dumps_stats(stats: dict[str, Any]) -> str:
    """Deterministic text of a statistics file (sorted keys, indent 2, final newline)."""
    return json.dumps(stats, sort_keys=True, indent=2) + "\n"


def load_stats(path: str | Path, dataset: str, config_version: int = 1) -> dict[str, Any]:
    """The entry for `dataset` of a `dataset_statistics.json`, checked to have 7-d q01/q99/mask
    and to come from the same config version (an entry without one is version 1)."""
    path = Path(path)
    if not path.is_file():
        raise StatsError(f"statistics file {path} does not exist")
    try:
        stats = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StatsError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(stats, dict) or dataset not in stats:
        keys = sorted(stats) if isinstance(stats, dict) else type(stats).__name__
        raise StatsError(f"{path}: no statistics for dataset {dataset!r}; present: {keys}")
    entry = stats[dataset]
    action = entry.get("action") if isinstance(entry, dict) else None
    if not isinstance(action, dict):
        raise StatsError(f"{path}: {dataset!r} has no 'action' statistics")
    for key in ("q01", "q99", "mask"):
        value = action.get(key)
        if not (isinstance(value, list) and len(value) == 7):
            raise StatsError(f"{path}: {dataset!r} action.{key} must be a list of 7 values, "
                             f"got {value!r}")
    found = entry.get("config_version", 1)
    if found != config_version:
        raise StatsError(f"{path}: {dataset!r} statistics are of config version {found}, the "
                         f"config is version {config_version} (its actions changed); "
                         f"recompute them")
    return entry
