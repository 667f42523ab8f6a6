"""Per-episode plan, subtasks and reasons (SPEC §7), and the per-step ECoT text composed from them.

Pure functions: the planner's answer is parsed strictly (`parse_plan`), a deterministic plan from
gripper events and motion runs replaces an answer that stays invalid (`fallback_plan`), and
`compose_reasoning` writes each step's text in SPEC §7's tag order.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

GRIPPER_CLOSED_BELOW = 0.5     # canonical gripper: 1 open, 0 closed


class PlanError(ValueError):
    """The planner's answer breaks the contract; the message is quoted in the retry prompt."""


@dataclass(frozen=True)
class Subtask:
    start: int          # first and last source step index, inclusive
    end: int
    plan_step: int      # index into Plan.plan
    text: str
    reason: str


@dataclass(frozen=True)
class Plan:
    plan: tuple[str, ...]
    subtasks: tuple[Subtask, ...]
    move_reasons: tuple[str, ...]     # one per motion run
    source: str                       # "model", "fallback" or "rules"

    def per_step(self, indices: Sequence[int], runs: Sequence[tuple[int, int, str]]
                 ) -> list[tuple[list[str], Subtask, str]]:
        """For each kept step: (remaining plan, its subtask, the reason of its motion run)."""
        out = []
        for t in indices:
            sub = next(s for s in self.subtasks if s.start <= t <= s.end)
            run = next(k for k, r in enumerate(runs) if r[0] <= t <= r[1])
            out.append((list(self.plan[sub.plan_step:]), sub, self.move_reasons[run]))
        return out


def runs_text(runs: Sequence[tuple[int, int, str]]) -> str:
    """The motion runs as the planner prompt lists them."""
    return "\n".join(f"{i + 1}. steps {a}-{b}: {label}" if a != b else f"{i + 1}. step {a}: {label}"
                     for i, (a, b, label) in enumerate(runs))


_FENCE = re.compile(r"^```(?:json)?\s*\n(.*)\n```$", re.S)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PlanError(f"{what} must be a non-empty string")
    return " ".join(value.split())


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise PlanError(f"{what} must be an integer, got {value!r}")
    return value


def parse_plan(answer: str, indices: Sequence[int], n_runs: int) -> Plan:
    """The planner's JSON answer → Plan. Strict: exactly the keys asked for, a non-empty plan of
    non-empty strings, subtask ranges in order, contiguous over the kept steps `indices`, inside
    the episode and covering every kept step, plan steps in range and never going back, one
    non-empty reason per motion run. Raises PlanError saying what is wrong."""
    text = answer.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"not a JSON object ({exc.msg} at character {exc.pos})") from None
    if not isinstance(raw, dict):
        raise PlanError("the answer must be a JSON object")
    if set(raw) != {"plan", "subtasks", "move_reasons"}:
        raise PlanError(f"keys must be exactly plan, subtasks, move_reasons; got {sorted(raw)}")
    if not isinstance(raw["plan"], list) or not raw["plan"]:
        raise PlanError("plan must be a non-empty list")
    plan = tuple(_text(p, f"plan[{i}]") for i, p in enumerate(raw["plan"]))
    if not isinstance(raw["subtasks"], list) or not raw["subtasks"]:
        raise PlanError("subtasks must be a non-empty list")
    position = {t: p for p, t in enumerate(indices)}
    subtasks: list[Subtask] = []
    for i, item in enumerate(raw["subtasks"]):
        what = f"subtasks[{i}]"
        if not isinstance(item, dict) or set(item) != {"start", "end", "plan_step", "subtask",
                                                       "reason"}:
            raise PlanError(f"{what} must be an object with keys start, end, plan_step, subtask, "
                            f"reason")
        start, end = _int(item["start"], f"{what}.start"), _int(item["end"], f"{what}.end")
        step = _int(item["plan_step"], f"{what}.plan_step")
        for name, t in (("start", start), ("end", end)):
            if t not in position:
                raise PlanError(f"{what}.{name} = {t} is outside the episode's steps "
                                f"{indices[0]}-{indices[-1]}")
        if end < start:
            raise PlanError(f"{what} ends ({end}) before it starts ({start})")
        expected = indices[0] if not subtasks else None
        if subtasks:
            prev = subtasks[-1].end
            if start <= prev:
                raise PlanError(f"{what} (steps {start}-{end}) overlaps the previous subtask, "
                                f"which ends at step {prev}")
            expected = indices[position[prev] + 1]
        if start != expected:
            raise PlanError(f"{what} starts at step {start}; the ranges must be contiguous, so it "
                            f"must start at step {expected}")
        if not 0 <= step < len(plan) or (subtasks and step < subtasks[-1].plan_step):
            raise PlanError(f"{what}.plan_step = {step} must be a plan index (0-{len(plan) - 1}) "
                            f"not before the previous subtask's")
        subtasks.append(Subtask(start, end, step, _text(item["subtask"], f"{what}.subtask"),
                                _text(item["reason"], f"{what}.reason")))
    if subtasks[-1].end != indices[-1]:
        raise PlanError(f"the subtasks end at step {subtasks[-1].end} but must cover every step "
                        f"up to {indices[-1]}")
    reasons = raw["move_reasons"]
    if not isinstance(reasons, list) or len(reasons) != n_runs:
        raise PlanError(f"move_reasons must be a list of exactly {n_runs} strings")
    return Plan(plan, tuple(subtasks),
                tuple(_text(r, f"move_reasons[{i}]") for i, r in enumerate(reasons)), "model")


# The deterministic plan: phases cut at the gripper's close and open events.
FALLBACK_PHASES = {
    "approach": ("approach the object", "the gripper is open and has to reach the object first"),
    "grasp": ("grasp the object", "the gripper is at the object and closes on it"),
    "move": ("move the object", "the object is held and has to be brought where the task wants it"),
    "release": ("release the object", "the object is where the task wants it, so the gripper opens"),
    "retreat": ("retreat from the object", "the task is done and the arm moves away"),
    "act": ("carry out the task", "no gripper event marks a phase, so the task is one movement"),
}


def fallback_plan(indices: Sequence[int], gripper: Sequence[float],
                  runs: Sequence[tuple[int, int, str]], source: str = "fallback") -> Plan:
    """A plan from gripper events (canonical gripper per kept step) and motion runs: approach up
    to the first close, grasp at it, move while closed, release at the next open, retreat after.
    Phases that do not occur are left out; move reasons name the run's motion and its phase.
    `source`: "fallback" (a model's answer was unusable) or "rules" (`--planner rules`)."""
    closed = [g < GRIPPER_CLOSED_BELOW for g in gripper]
    n = len(indices)
    close = next((p for p in range(n) if closed[p] and (p == 0 or not closed[p - 1])), None)
    spans: list[tuple[str, int, int]] = []      # (phase, first position, last position)
    if close is None:
        spans.append(("act", 0, n - 1))
    else:
        release = next((p for p in range(close + 1, n) if not closed[p]), None)
        spans += [("approach", 0, close - 1), ("grasp", close, close)]
        if release is None:
            spans.append(("move", close + 1, n - 1))
        else:
            spans += [("move", close + 1, release - 1), ("release", release, release),
                      ("retreat", release + 1, n - 1)]
    spans = [s for s in spans if s[1] <= s[2]]
    plan = tuple(FALLBACK_PHASES[name][0] for name, _, _ in spans)
    subtasks = tuple(Subtask(indices[a], indices[b], k, *FALLBACK_PHASES[name])
                     for k, (name, a, b) in enumerate(spans))
    reasons = []
    for start, _, label in runs:
        phase = next(s for s in subtasks if s.start <= start <= s.end)
        reasons.append(f"{label} to {phase.text}")
    return Plan(plan, subtasks, tuple(reasons), source)


TAGS = ("TASK", "PLAN", "VISIBLE OBJECTS", "SUBTASK REASONING", "SUBTASK", "MOVE REASONING",
        "MOVE", "GRIPPER POSITION")


def compose_reasoning(fields: dict[str, str | None]) -> str:
    """`TAG: value` in SPEC §7's order, joined by spaces; tags whose value is None are left out."""
    unknown = set(fields) - set(TAGS)
    if unknown:
        raise ValueError(f"unknown reasoning tags {sorted(unknown)}")
    return " ".join(f"{tag}: {fields[tag]}" for tag in TAGS if fields.get(tag) is not None)
