"""The planner's strict JSON parser, the deterministic fallback plan and the composed text."""
from __future__ import annotations

import json

import pytest

from armdata.schemas.columns import plan_text
from armdata.transforms.plan import PlanError, compose_reasoning, fallback_plan, parse_plan, \
    runs_text

INDICES = [1, 2, 3, 4, 5, 6]          # Bridge-like: source step 0 dropped
RUNS = [(1, 3, "move down"), (4, 4, "close gripper"), (5, 6, "move up")]


def answer(**over):
    raw = {"plan": ["pick up the cup", "put it in the sink"],
           "subtasks": [{"start": 1, "end": 4, "plan_step": 0, "subtask": "reach the cup",
                         "reason": "the cup is below"},
                        {"start": 5, "end": 6, "plan_step": 1, "subtask": "lift the cup",
                         "reason": "it must go to the sink"}],
           "move_reasons": ["to reach the cup", "to hold it", "to lift it"]}
    raw.update(over)
    return json.dumps(raw)


def test_valid_answer():
    plan = parse_plan(answer(), INDICES, len(RUNS))
    assert plan.source == "model" and plan.plan == ("pick up the cup", "put it in the sink")
    steps = plan.per_step(INDICES, RUNS)
    assert steps[0] == (["pick up the cup", "put it in the sink"], plan.subtasks[0],
                        "to reach the cup")
    assert steps[4][0] == ["put it in the sink"] and steps[4][1].text == "lift the cup"
    assert steps[3][2] == "to hold it"
    # a fenced answer is accepted, nothing else around the JSON is
    assert parse_plan("```json\n" + answer() + "\n```", INDICES, len(RUNS)) == plan


def sub(start, end, step=0):
    return {"start": start, "end": end, "plan_step": step, "subtask": "s", "reason": "r"}


@pytest.mark.parametrize("text, message", [
    (answer()[:-20], "not a JSON object"),                                     # truncated
    ("Sure! Here is the plan: step 1 ...", "not a JSON object"),               # not JSON
    ("Here: " + answer(), "not a JSON object"),
    ("[1, 2]", "must be a JSON object"),
    (answer(extra=1), "keys must be exactly"),
    (answer(plan=[]), "plan must be a non-empty list"),
    (answer(plan=["a", "  "]), r"plan\[1\] must be a non-empty string"),
    (answer(subtasks=[sub(1, 4), sub(4, 6)]), "overlaps"),                     # overlapping
    (answer(subtasks=[sub(1, 3), sub(5, 6)]), "must start at step 4"),         # gap
    (answer(subtasks=[sub(0, 4), sub(5, 6)]), "outside the episode"),          # out of range
    (answer(subtasks=[sub(1, 4), sub(5, 9)]), "outside the episode"),
    (answer(subtasks=[sub(2, 6)]), "must start at step 1"),
    (answer(subtasks=[sub(1, 5)]), "must cover every step up to 6"),
    (answer(subtasks=[sub(1, 4), sub(6, 5)]), "ends"),
    (answer(subtasks=[sub(1, 4, 1), sub(5, 6, 0)]), "plan_step"),
    (answer(subtasks=[sub(1, 6, 2)]), "plan_step"),
    (answer(subtasks=[{"start": "1", "end": 6, "plan_step": 0, "subtask": "s", "reason": "r"}]),
     "must be an integer"),
    (answer(subtasks=[{"start": 1, "end": 6}]), "must be an object with keys"),
    (answer(move_reasons=["a", "b"]), "exactly 3 strings"),
    (answer(move_reasons=["a", "", "c"]), r"move_reasons\[1\]"),
])
def test_invalid_answers(text, message):
    with pytest.raises(PlanError, match=message):
        parse_plan(text, INDICES, len(RUNS))


def test_fallback_from_gripper_events():
    gripper = [1, 1, 1, 0, 0, 1]         # closes at step 4, opens at step 6
    plan = fallback_plan(INDICES, gripper, RUNS)
    assert plan.source == "fallback"
    assert plan.plan == ("approach the object", "grasp the object", "move the object",
                         "release the object")
    assert [(s.start, s.end) for s in plan.subtasks] == [(1, 3), (4, 4), (5, 5), (6, 6)]
    assert plan.move_reasons == ("move down to approach the object",
                                 "close gripper to grasp the object",
                                 "move up to move the object")
    # the fallback satisfies the parser's own contract
    as_json = {"plan": list(plan.plan), "move_reasons": list(plan.move_reasons),
               "subtasks": [{"start": s.start, "end": s.end, "plan_step": s.plan_step,
                             "subtask": s.text, "reason": s.reason} for s in plan.subtasks]}
    assert parse_plan(json.dumps(as_json), INDICES, len(RUNS)).subtasks == plan.subtasks


def test_fallback_without_gripper_events_and_closed_from_start():
    plan = fallback_plan(INDICES, [1] * 6, RUNS)
    assert plan.plan == ("carry out the task",) and plan.subtasks[0].end == 6
    plan = fallback_plan(INDICES, [0] * 6, RUNS)
    assert plan.plan == ("grasp the object", "move the object")
    plan = fallback_plan(INDICES, [1, 0, 0, 1, 1, 1], RUNS)
    assert plan.plan[-1] == "retreat from the object" and plan.subtasks[-1].start == 5


def test_compose_order_and_omission():
    text = compose_reasoning({"MOVE": "move up", "TASK": "lift", "GRIPPER POSITION": "[1, 2]",
                              "PLAN": plan_text(["a", "b"]), "VISIBLE OBJECTS": None})
    assert text == "TASK: lift PLAN: 1. a 2. b MOVE: move up GRIPPER POSITION: [1, 2]"
    with pytest.raises(ValueError):
        compose_reasoning({"ACTION": "x"})


def test_runs_text():
    assert runs_text(RUNS) == "1. steps 1-3: move down\n2. step 4: close gripper\n3. steps 5-6: move up"


def test_prompt_files_are_versioned_and_hashed(tmp_path, monkeypatch):
    import hashlib

    from armdata.transforms import prompts

    plan = prompts.load_prompt("plan", ("system", "user", "retry"))
    assert plan.version >= 1
    assert plan.sha256 == hashlib.sha256((prompts.PROMPT_DIR / "plan.yaml").read_bytes()).hexdigest()
    assert "{error}" in plan.templates["retry"]
    (tmp_path / "bad.yaml").write_text("version: 1\nuser: hi\n")
    monkeypatch.setattr(prompts, "PROMPT_DIR", tmp_path)
    with pytest.raises(ValueError, match="missing template"):
        prompts.load_prompt("bad", ("user", "retry"))
