"""Language motions (SPEC §7, the ECoT rule): what the arm does over the next few steps, in words.

Pure functions on arrays; the reasoning stage calls `episode_motions`. For step t of an episode of
T source steps, d = S[min(t + window, T - 1)] - S[t] with S = [x, y, z, roll, pitch, yaw, gripper]
(windows by *source* step index, so a dropped step does not shift them); xyz is rescaled to an L1
norm of `translation_norm` when larger, rotations are divided by `rotation_divisor`, every component
is ternarised at ±`threshold`, and the words are written in a fixed order. The last step copies the
label of the step before it.
"""
from __future__ import annotations

import bisect
from typing import Sequence

import numpy as np

from armdata.schemas.config import MotionConfig


def ternarize(delta: Sequence[float], cfg: MotionConfig) -> np.ndarray:
    """(7,) state difference → (7,) ints in {-1, 0, 1}: rescale, divide rotations, threshold."""
    d = np.asarray(delta, np.float64).copy()
    l1 = float(np.abs(d[:3]).sum())
    if l1 > cfg.translation_norm:
        d[:3] *= cfg.translation_norm / l1
    d[3:6] /= cfg.rotation_divisor
    return np.where(d > cfg.threshold, 1, np.where(d < -cfg.threshold, -1, 0)).astype(np.int64)


def motion_label(signs: Sequence[int], cfg: MotionConfig) -> str:
    """Ternary (x, y, z, roll, pitch, yaw, gripper) → "move forward left, tilt up, ..." or "stop"."""
    x, y, z, roll, pitch, yaw, grip = (int(s) for s in signs)
    moves = [cfg.word(axis, s) for axis, s in (("x", x), ("y", y), ("z", z)) if s]
    parts = ["move " + " ".join(moves)] if moves else []
    tilt = roll or pitch
    if tilt:
        parts.append(cfg.word("tilt", tilt))
    if yaw:
        parts.append(cfg.word("yaw", yaw))
    if grip:
        parts.append(cfg.word("gripper", grip))
    return ", ".join(parts) if parts else "stop"


def episode_motions(states: np.ndarray, indices: Sequence[int], num_steps: int,
                    cfg: MotionConfig) -> list[str]:
    """One label per kept step. `states` (n, 7) in x, y, z, roll, pitch, yaw, gripper order for
    the kept steps, `indices` their (sorted) source step indices, `num_steps` the source length.
    When the window's end step was dropped, the last kept step before it stands in for it."""
    states = np.asarray(states, np.float64)
    n = len(indices)
    if states.shape != (n, 7):
        raise ValueError(f"motion needs ({n}, 7) states, got {states.shape}")
    if not np.isfinite(states).all():
        raise ValueError("motion states contain NaN or infinity")
    labels = []
    for p, t in enumerate(indices):
        q = bisect.bisect_right(indices, min(t + cfg.window, num_steps - 1)) - 1
        labels.append(motion_label(ternarize(states[q] - states[p], cfg), cfg))
    if n >= 2:
        labels[-1] = labels[-2]
    return labels


def states_from_actions(actions: np.ndarray) -> np.ndarray:
    """A stand-in state for robots without a usable one: position and rotation are the running
    sum of the canonical action deltas before each step (so a window's difference is the motion
    commanded over it), the gripper is the canonical gripper command (1 open, 0 closed)."""
    actions = np.asarray(actions, np.float64)
    pose = np.concatenate([np.zeros((1, 6)), np.cumsum(actions[:-1, :6], axis=0)], axis=0)
    return np.concatenate([pose[:len(actions)], actions[:, 6:7]], axis=1)


def motion_states(states: np.ndarray, cfg: MotionConfig) -> np.ndarray | None:
    """The (n, 7) motion state picked from the robot's state by `cfg.state_indices`, or None when
    the state is missing or too short for them (the caller then uses the actions)."""
    states = np.asarray(states)
    if states.ndim != 2 or states.shape[1] <= max(cfg.state_indices):
        return None
    return states[:, list(cfg.state_indices)]


def motion_runs(labels: Sequence[str], indices: Sequence[int]) -> list[tuple[int, int, str]]:
    """Run-length compression: [(first source index, last source index, label), ...]."""
    runs: list[tuple[int, int, str]] = []
    for t, label in zip(indices, labels):
        if runs and runs[-1][2] == label:
            runs[-1] = (runs[-1][0], t, label)
        else:
            runs.append((t, t, label))
    return runs
