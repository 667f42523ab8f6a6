"""Golden training samples: for fixed rows and seeds, `armdata samples --json --images` gives the
question, answer and images that SPEC §8 prescribes. The expected strings are SPEC's sentences
typed here, the action token strings SPEC §4's two examples (every action is chosen to fall in
bin 1 or 256), and the expected drawn image is drawn here with OpenCV as SPEC §8 says."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from armdata.schemas.episode import Episode, Step, encode_png
from armdata.testing.output_rows import write_output
from tests.conftest import armdata

# SPEC §8, character for character.
QUESTION = (
    "The task is {task}. What is the action that the robot should take. To figure out the action "
    "that the robot should take to {task}, let's think through it step by step. First, what is the "
    "depth map for the first image? Second, what is the trajectory of the end effector in the "
    "first image? Based on the depth map of the first image and the trajectory of the end effector "
    "in the first image, along with other images from different camera views as additional "
    "information, what is the action that the robot should take?")
FINETUNE_ANSWER = (
    "The depth map of the image is {depth}. The trajectory of the left end effector is {trace}. "
    "The trajectory of the right end effector is {trace}. Based on this information, the action "
    "that the robot should take is {action}.")
PRETRAIN_ANSWER = (
    "The depth map of the image is {depth}. The trajectory of the end effector is {trace}. Based "
    "on this information, the action that the robot should take is {action}.")
DRAWN_QUESTION = (
    "The task is {task}. Notice that the trajectory of the end effector is annotated on the first "
    "image. Based on the trajectory annotated on the image, along with other images from different "
    "camera views as additional information, what is the action that the robot should take?")
DRAWN_ANSWER = ("Based on the image and the annotated trajectory of the end effector, the action "
                "that the robot should take is {action}.")
# SPEC §4: bin 1 → id 151642 → "â½Ĺ"; bin 256 → id 151387 → "ðŁİĳ".
TOKEN = {1: "â½Ĺ", 256: "ðŁİĳ"}

TASK = "put the spoon in the pot."          # verbatim: its period stays
STEPS, W, H = 12, 64, 48
NO_DEPTH, NO_TRACE = 10, 11                  # rows that give no sample
TRACES = [[[10, 20], [128, 64], [255, 255]], [[40, 200]], [[0, 0], [255, 0], [255, 255], [0, 255],
                                                             [128, 128]]]
STATS = {"q01": [-0.5] * 6 + [0.0], "q99": [0.5] * 6 + [1.0], "mask": [True] * 6 + [False]}
SEEDS = range(10)


def bins_of(step: int) -> list[int]:
    """Motion dims far outside [q01, q99] clip to bin 1 or 256; the open gripper (1.0) is 256."""
    return [256 if (step + d) % 3 == 0 else 1 for d in range(6)] + [256]


def pixels(step: int, size: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(step).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def trace_of(step: int) -> list[list[int]] | None:
    return None if step == NO_TRACE else TRACES[step % len(TRACES)]


def codes_of(step: int) -> np.ndarray | None:
    return None if step == NO_DEPTH else (np.arange(100) * 7 + step) % 128


def write_golden(out: Path) -> Path:
    """The golden rows as a built dataset's directory (also used by test_sample_forms.py)."""
    steps = [Step(index=s, image=encode_png(pixels(s, (W, H))),
                  action=np.array([2.0 if b == 256 else -2.0 for b in bins_of(s)[:6]] + [1.0],
                                  np.float32),
                  state=np.zeros(7, np.float32), instruction=TASK, is_first=s == 0,
                  is_last=s == STEPS - 1, wrist_image=encode_png(pixels(100 + s, (32, 32))),
                  image_width=W, image_height=H, depth_codes=codes_of(s), trace=trace_of(s))
             for s in range(STEPS)]
    return write_output(out, [Episode("golden_robot", "ep0", STEPS, steps)], STATS,
                        stages=["actions", "depth", "trace"])


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    return write_golden(tmp_path_factory.mktemp("golden") / "out")


def expected_action(step: int) -> str:
    """SPEC §4's chunk text: steps i..i+7, the last step repeated past the episode's end."""
    rows = [bins_of(min(step + k, STEPS - 1)) for k in range(8)]
    return "[" + ", ".join("[" + ", ".join(TOKEN[b] for b in r) + "]" for r in rows) + "]"


def expected_depth(step: int) -> str:
    return "<DEPTH_START>" + "".join(f"<DEPTH_{c}>" for c in codes_of(step)) + "<DEPTH_END>"


def spec_drawn(image: np.ndarray, trace: list[list[int]]) -> np.ndarray:
    out = image.copy()
    h, w = out.shape[:2]
    if len(trace) >= 2:
        pts = [(round(x * (w - 1) / 255), round(y * (h - 1) / 255)) for x, y in trace]
        for a, b in zip(pts, pts[1:]):
            cv2.line(out, a, b, (0, 255, 255), 2, cv2.LINE_AA)
    return out


def samples_json(output: Path, images: Path, capsys, *extra: str) -> list[dict]:
    capsys.readouterr()
    assert armdata("samples", output, "--n", STEPS, "--json", "--images", images, *extra) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def loaded(path: str) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_finetune_samples_are_spec_section_8(output, tmp_path, capsys):
    variants = []
    for seed in SEEDS:
        records = samples_json(output, tmp_path / str(seed), capsys, "--seed", str(seed))
        assert [r["step"] for r in records] == [s for s in range(STEPS)
                                                 if s not in (NO_DEPTH, NO_TRACE)]
        for r in records:
            s = r["step"]
            assert set(r) == {"episode_id", "step", "form", "action_format", "variant",
                              "question", "answer", "images"}
            assert (r["episode_id"], r["form"], r["action_format"]) == ("ep0", "finetune", "text")
            main, wrist = (loaded(p) for p in r["images"])     # every camera, main first
            assert np.array_equal(wrist, pixels(100 + s, (32, 32)))
            if r["variant"] == "drawn":
                assert r["question"] == DRAWN_QUESTION.format(task=TASK)
                assert r["answer"] == DRAWN_ANSWER.format(action=expected_action(s))
                assert np.array_equal(main, spec_drawn(pixels(s, (W, H)), trace_of(s)))
            else:
                assert r["variant"] == "reasoning"
                assert r["question"] == QUESTION.format(task=TASK)
                assert r["answer"] == FINETUNE_ANSWER.format(
                    depth=expected_depth(s), trace=str(trace_of(s)), action=expected_action(s))
                assert np.array_equal(main, pixels(s, (W, H)))
            variants.append((s, r["variant"]))
    drawn = [s for s, v in variants if v == "drawn"]
    assert 0.35 < len(drawn) / len(variants) < 0.65          # SPEC: 50 % of fine-tune samples
    assert {s % len(TRACES) for s in drawn} == {0, 1, 2}     # 3- and 5-point lines, 1 point: none
    assert not np.array_equal(spec_drawn(pixels(0, (W, H)), TRACES[0]), pixels(0, (W, H)))


def test_pretrain_form_and_ids_format(output, tmp_path, capsys):
    records = samples_json(output, tmp_path, capsys, "--sample-form", "pretrain",
                           "--action-format", "ids")
    assert len(records) == STEPS - 2
    for r in records:
        s = r["step"]
        assert (r["form"], r["action_format"], r["variant"]) == ("pretrain", "ids", "reasoning")
        assert r["question"] == QUESTION.format(task=TASK)
        assert r["answer"] == PRETRAIN_ANSWER.format(
            depth=expected_depth(s), trace=str(trace_of(s)), action=expected_action(s))


def test_skipped_rows_are_named(output, tmp_path, capsys, caplog):
    with caplog.at_level("WARNING", logger="armdata.commands.samples"):
        samples_json(output, tmp_path, capsys)
    assert f"step {NO_DEPTH} gives no sample (skipped_no_depth)" in caplog.text
    assert f"step {NO_TRACE} gives no sample (skipped_no_trace)" in caplog.text


def test_molmoact_loader_reads_our_export_as_the_trainers_samples(output, tmp_path, capsys):
    """MolmoAct's fine-tune loader formats SPEC §8's strings from the columns of our
    `export --format molmoact` (SPEC §6): those equal what our trainer feeds for the same rows."""
    datasets = pytest.importorskip(
        "datasets", reason="the MolmoAct export needs the export extra (datasets)")
    export = tmp_path / "molmoact"
    assert armdata("export", output, "--format", "molmoact", "--out", export) == 0
    exported = datasets.load_from_disk(str(export))
    assert len(exported) == STEPS - 1                   # no depth: skipped; no trace: "[]"
    ours = {r["step"]: r for r in samples_json(output, tmp_path / "images", capsys,
                                               "--drawn-trace", "0")}
    for step, item in zip([s for s in range(STEPS) if s != NO_DEPTH], exported):
        task, depth, trace = item["language_instruction"], item["depth"], item["trace"]
        action = json.loads(item["processed_action"])["chunked_action"]
        if step == NO_TRACE:
            assert trace == "[]" and step not in ours   # the trainer skips it (README)
            continue
        assert QUESTION.format(task=task) == ours[step]["question"]
        assert FINETUNE_ANSWER.format(depth=depth, trace=trace, action=action) == \
            ours[step]["answer"]
        main, wrist = (loaded(p) for p in ours[step]["images"])
        assert np.array_equal(np.asarray(item["image"].convert("RGB")), main)
        assert np.array_equal(np.asarray(item["wrist_image"].convert("RGB")), wrist)
