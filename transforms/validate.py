"""Validation: drop the steps that cannot be used, each with its reason.

Runs right after standardization, before any model stage, so that statistics and every later stage
only see usable steps: decodable images (their size is recorded here), finite 7-d actions, finite
state of one length per episode, and an instruction where the config requires one.
"""
from __future__ import annotations

import numpy as np

from armdata.schemas.config import DatasetConfig
from armdata.schemas.episode import Episode, Rejection, Step, check_image
from armdata.transforms.base import Stage


def image_size(data: bytes | None, what: str) -> tuple[int, int]:
    """(w, h) of an encoded frame, all of whose data is decoded so that truncated or corrupt files
    are caught (see `check_image`)."""
    if not data:
        raise ValueError(f"{what} is empty")
    try:
        return check_image(data)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from exc


def step_problem(step: Step, state_dim: int,
                 require_instruction: bool) -> tuple[str, str] | None:
    """(counter key, reason) why this step cannot be used, or None. Records the image size."""
    action = np.asarray(step.action)
    if action.shape != (7,):
        return "action_shape", f"action has shape {action.shape}, expected (7,)"
    if not np.all(np.isfinite(action)):
        return "action_not_finite", f"action is not finite: {action.tolist()}"
    state = np.asarray(step.state)
    if state.shape != (state_dim,):
        return "state_shape", (f"state has shape {state.shape}, the episode's first step has "
                               f"({state_dim},)")
    if not np.all(np.isfinite(state)):
        return "state_not_finite", f"state is not finite: {state.tolist()}"
    if require_instruction and not step.instruction.strip():
        return "instruction_missing", "instruction is missing or empty"
    try:
        step.image_width, step.image_height = image_size(step.image, "image")
        if step.wrist_image is not None:
            image_size(step.wrist_image, "wrist_image")
    except ValueError as exc:
        return "image_corrupt", str(exc)
    return None


class ValidateStage(Stage):
    name = "validate"

    def __init__(self, config: DatasetConfig) -> None:
        super().__init__()
        self.require_instruction = config.require_instruction

    def process(self, episode: Episode) -> tuple[Episode | None, list[Rejection]]:
        if not episode.steps:
            self.count("empty_episode")
            return None, [episode.reject(self.name, "episode has no steps", steps=0)]
        state_dim = int(np.asarray(episode.steps[0].state).size)
        problems = {}
        for pos, step in enumerate(episode.steps):
            problem = step_problem(step, state_dim, self.require_instruction)
            if problem is not None:
                key, problems[pos] = problem
                self.count(key)
        rejections = episode.drop_steps(problems, self.name)
        self.count("steps_ok", len(episode.steps))
        return (episode if episode.steps else None), rejections
