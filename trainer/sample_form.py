"""What the model is given and must answer for one armdata row (SPEC §8): the question, the answer
as typed pieces and the images, in MolmoAct's fine-tune form (default) or its pre-training form.
Text and pixels only, no tokenizer: the trainer tokenizes a sample (`trainer/samples.py`) and
`armdata samples` prints it, so both show the same thing.

Variants: `reasoning` (depth → trace → action, SPEC's question), `drawn` (the trace drawn on the
first image, action only; `--drawn-trace`, 0.5 in the fine-tune form), and the extension variants
`depth_only`, `trace_only`, `action_only` (`--parts`). A row that lacks a part its samples use is
skipped and counted (`SkippedRow`), never given a shortened or empty answer.
"""
from __future__ import annotations

import argparse
import zlib
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np
from PIL import Image

from armdata.errors import UsageError
from armdata.schemas.episode import DataError, load_image
from armdata.schemas.output import arm_traces_of, depth_text, image_bytes, trace_text
from armdata.transforms.actions import bin_strings

# Bumped whenever the text, images or tokenization of a sample change: checkpoints and saved
# models record it, and `--resume` or `predict` with another version is refused.
# 1: pre-train-like answer, task without its final period, action ids, no wrist image.
# 2: SPEC §8 fine-tune form by default (left/right traces, drawn-trace variant, every camera,
#    task verbatim, action token strings as text).
SAMPLE_FORMAT_VERSION = 2
FORMS = ("finetune", "pretrain")
ACTION_FORMATS = ("text", "ids")
CAMERAS = ("image", "wrist_image")          # every camera the row has, in this order
OTHER, ACTION, DEPTH, TRACE = 0, 1, 2, 3    # what an answer piece (and its tokens) is

QUESTION = {
    # (depth, trace) the answer gives → the question after "The task is {task}. "
    (True, True): (
        "What is the action that the robot should take. To figure out the action that the robot "
        "should take to {task}, let's think through it step by step. First, what is the depth map "
        "for the first image? Second, what is the trajectory of the end effector in the first "
        "image? Based on the depth map of the first image and the trajectory of the end effector "
        "in the first image, along with other images from different camera views as additional "
        "information, what is the action that the robot should take?"),
    (True, False): (
        "What is the action that the robot should take. To figure out the action that the robot "
        "should take to {task}, let's think through it step by step. First, what is the depth map "
        "for the first image? Based on the depth map of the first image, along with other images "
        "from different camera views as additional information, what is the action that the robot "
        "should take?"),
    (False, True): (
        "What is the action that the robot should take. To figure out the action that the robot "
        "should take to {task}, let's think through it step by step. First, what is the trajectory "
        "of the end effector in the first image? Based on the trajectory of the end effector in "
        "the first image, along with other images from different camera views as additional "
        "information, what is the action that the robot should take?"),
    (False, False): "What is the action that the robot should take?",
}
DRAWN_QUESTION = (
    "Notice that the trajectory of the end effector is annotated on the first image. Based on the "
    "trajectory annotated on the image, along with other images from different camera views as "
    "additional information, what is the action that the robot should take?")
ACTION_LEAD = "action that the robot should take is "
DRAWN_LEAD = ("Based on the image and the annotated trajectory of the end effector, the "
              + ACTION_LEAD)
VARIANTS = {("depth", "trace"): "reasoning", ("depth",): "depth_only", ("trace",): "trace_only",
            (): "action_only"}
TRACE_RGB = (0, 255, 255)
TRACE_THICKNESS = 2


class SkippedRow(ValueError):
    """A row that gives no sample; the loader skips it and counts `reason`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class CorruptImage(SkippedRow):
    def __init__(self, message: str):
        super().__init__("corrupt_image", message)


@dataclass
class SampleOptions:
    sample_form: str = "finetune"       # SPEC §8's fine-tune or pre-training form
    chunk: bool = True                  # the 8-step chunk (action_chunk_bins) or one step
    action_format: str = "text"         # "text": token strings as text; "ids": one id per bin
    with_reasoning: bool = False        # the ECoT `reasoning` column before the answer
    reasoning_dropout: float = 0.5      # ECoT-Lite: fraction of samples without it
    drawn_trace: float = 0.5            # share of the drawn-trace variant
    parts: tuple[str, ...] = ("depth", "trace")   # what the answer gives before the action

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "parts": list(self.parts),
                "sample_format_version": SAMPLE_FORMAT_VERSION}

    @classmethod
    def from_json(cls, saved: dict[str, Any], where: str) -> "SampleOptions":
        """Options saved by `to_json`; UsageError for another sample format version."""
        version = saved.get("sample_format_version", 1)
        if version != SAMPLE_FORMAT_VERSION:
            raise UsageError(f"{where}: trained on sample format {version}, this armdata writes "
                             f"format {SAMPLE_FORMAT_VERSION} (README: Training a model on the "
                             f"shards): retrain, or use the armdata that trained it")
        fields = {k: v for k, v in saved.items() if k != "sample_format_version"}
        return cls(**{**fields, "parts": tuple(fields.get("parts", ("depth", "trace")))})

    @property
    def needs_trace(self) -> bool:
        return "trace" in self.parts or self.drawn_trace > 0


def parse_parts(text: str) -> tuple[str, ...]:
    parts = tuple(p for p in text.split(",") if p and p != "none")
    if set(parts) - {"depth", "trace"}:
        raise argparse.ArgumentTypeError(f"--parts {text!r}: choose from depth, trace, none")
    return tuple(p for p in ("depth", "trace") if p in parts)


def add_sample_arguments(p: argparse.ArgumentParser) -> None:
    """The sample options `armdata train` and `armdata samples` share."""
    p.add_argument("--sample-form", choices=FORMS, default="finetune",
                   help="finetune: MolmoAct's fine-tune form (left and right trace); pretrain: "
                        "its pre-training form (one trace sentence)")
    p.add_argument("--action-format", choices=ACTION_FORMATS, default="text",
                   help="text: the Qwen2 token strings as text (MolmoAct's parser reads them); "
                        "ids: one token id per bin (shorter, not readable by MolmoAct's parser)")
    p.add_argument("--chunk", action=argparse.BooleanOptionalAction, default=True,
                   help="target the 8-step action chunk (else the single step)")
    p.add_argument("--parts", type=parse_parts, default=("depth", "trace"),
                   help="what the answer gives before the action: depth,trace (default, SPEC), "
                        "depth, trace or none (extension variants)")
    p.add_argument("--drawn-trace", type=float,
                   help="share of drawn-trace samples (default 0.5 for --sample-form finetune "
                        "with --parts depth,trace, else 0)")
    p.add_argument("--with-reasoning", action="store_true",
                   help="put the ECoT reasoning column first")
    p.add_argument("--reasoning-dropout", type=float, default=0.5)


def sample_options(args: argparse.Namespace) -> SampleOptions:
    """SampleOptions from `add_sample_arguments`' options, defaults resolved."""
    drawn = args.drawn_trace
    if drawn is None:
        drawn = 0.5 if args.sample_form == "finetune" and args.parts == ("depth", "trace") else 0.0
    for flag, value in (("--drawn-trace", drawn), ("--reasoning-dropout", args.reasoning_dropout)):
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"{flag} must be in [0, 1], got {value}")
    return SampleOptions(sample_form=args.sample_form, chunk=args.chunk,
                         action_format=args.action_format, with_reasoning=args.with_reasoning,
                         reasoning_dropout=args.reasoning_dropout, drawn_trace=drawn,
                         parts=args.parts)


def check_stages(root: str, stages: list[str] | None, options: SampleOptions) -> None:
    """Refuse (one line) a dataset built without a stage every sample needs."""
    need = ["depth"] * ("depth" in options.parts) + ["trace"] * options.needs_trace
    missing = [s for s in need if stages is not None and s not in stages]
    if missing:
        raise UsageError(f"{root} was built without the {' and '.join(missing)} stage(s) these "
                         f"samples need: rebuild with --stages actions,depth,trace, or leave "
                         f"them out (e.g. --parts none --drawn-trace 0)")


def sample_rng(seed: int, epoch: int, row: dict[str, Any]) -> np.random.Generator:
    """A row's random draws (variant, reasoning dropout): a function of the run's seed, the epoch
    and the row only, so `armdata samples --seed S` shows what epoch 0 of `--seed S` feeds, on any
    number of ranks and loader workers."""
    key = zlib.crc32(f"{row.get('dataset')}/{row.get('episode_id')}".encode())
    return np.random.default_rng([seed, epoch, key, int(row.get("step") or 0)])


class Piece(NamedTuple):
    kind: int          # OTHER, ACTION, DEPTH or TRACE
    text: str
    bin: int = 0       # ACTION: the bin 1..256 whose token string `text` is


@dataclass
class Sample:
    variant: str
    question: str
    answer: list[Piece]
    images: list[Image.Image]
    cameras: list[str]
    bins: np.ndarray                      # the target's action bins, (8, 7) or (7,)
    trace: list[list[int]] | None         # every trace point the answer gives, in order
    with_reasoning: bool = False          # the ECoT reasoning text opens the answer

    @property
    def answer_text(self) -> str:
        return "".join(p.text for p in self.answer)


def read_image(cell: Any) -> Image.Image | None:
    """An image cell (schema v2 struct or v1 bytes) decoded to RGB; CorruptImage if it is not."""
    try:
        data = image_bytes(cell)
    except TypeError as exc:
        raise CorruptImage(str(exc)) from exc
    if data is None:
        return None
    try:
        return load_image(data).convert("RGB")
    except DataError as exc:
        raise CorruptImage(str(exc)) from exc


def draw_trace(image: Image.Image, trace: list[list[int]]) -> Image.Image:
    """SPEC §8's annotation, on a copy: points scaled from 0..255 by (w-1)/255 and (h-1)/255
    (float32, rounded to the nearest pixel, as MolmoAct does), consecutive points joined by
    anti-aliased RGB (0, 255, 255) lines 2 px thick; nothing for fewer than 2 points."""
    out = np.array(image.convert("RGB"))
    h, w = out.shape[:2]
    if len(trace) >= 2:
        scale = np.array([(w - 1) / 255.0, (h - 1) / 255.0], np.float32)
        pts = np.rint(np.asarray(trace, np.float32) * scale).astype(int)
        pts = np.clip(pts, 0, [w - 1, h - 1])
        for a, b in zip(pts[:-1], pts[1:]):
            cv2.line(out, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), TRACE_RGB,
                     thickness=TRACE_THICKNESS, lineType=cv2.LINE_AA)
    return Image.fromarray(out)


def action_pieces(bins: np.ndarray) -> list[Piece]:
    """`[[t, ..., t], ...]` (chunk) or `[t, ..., t]` (one step), t the token string of a bin."""
    strings = bin_strings()
    rows = bins if bins.ndim == 2 else bins[None]
    out = [Piece(OTHER, "[" if bins.ndim == 1 else "[[")]
    for r, step in enumerate(rows):
        if r:
            out.append(Piece(OTHER, "], ["))
        for j, b in enumerate(step):
            if j:
                out.append(Piece(OTHER, ", "))
            out.append(Piece(ACTION, strings[int(b) - 1], int(b)))
    out.append(Piece(OTHER, "]" if bins.ndim == 1 else "]]"))
    return out


def arm_traces(row: dict[str, Any], form: str) -> list[tuple[str, list[list[int]]]]:
    """The (sentence label, trace) pairs the answer gives; [] when a trace is missing.
    Fine-tune form: left then right (a single-arm row's trace twice; a bimanual row's arms named
    left/right, else its first two); pre-train form: the row's (first arm's) trace."""
    if form == "pretrain":
        return [("", row["trace"])] if row.get("trace") else []
    by_name = arm_traces_of(row.get("arm_traces"))
    if not by_name:
        return [("left ", row["trace"]), ("right ", row["trace"])] if row.get("trace") else []
    traces = list(by_name.values())
    left = by_name["left"] if "left" in by_name else traces[0]
    right = by_name["right"] if "right" in by_name else traces[min(1, len(traces) - 1)]
    return [("left ", left), ("right ", right)] if left and right else []


def action_bins(row: dict[str, Any], chunk: bool) -> np.ndarray:
    key = "action_chunk_bins" if chunk else "action_bins"
    if row.get(key) is None:
        raise ValueError(f"row has no {key} (build with the actions stage)")
    return np.asarray(row[key], np.int64)


def build_sample(row: dict[str, Any], options: SampleOptions,
                 rng: np.random.Generator) -> Sample:
    """The sample of one row; SkippedRow when the row lacks what the options need."""
    main = read_image(row.get("image"))
    if main is None:
        raise CorruptImage("row has no image")
    images, cameras = [main], ["image"]
    for name in CAMERAS[1:]:
        image = read_image(row.get(name))
        if image is not None:
            images.append(image)
            cameras.append(name)
    task = row.get("instruction") or ""     # verbatim (SPEC §8)
    bins = action_bins(row, options.chunk)
    codes = row.get("depth_codes")
    if "depth" in options.parts and codes is None:
        raise SkippedRow("skipped_no_depth", "row has no depth codes")
    traces = arm_traces(row, options.sample_form) if options.needs_trace else []
    if options.needs_trace and not traces:
        raise SkippedRow("skipped_no_trace", "row has no trace")
    drawn = bool(rng.random() < options.drawn_trace)   # always drawn first: a fixed draw order
    reasoning = bool(options.with_reasoning and row.get("reasoning")
                     and rng.random() >= options.reasoning_dropout)
    answer = [Piece(OTHER, row["reasoning"].strip() + " ")] if reasoning else []
    if drawn:
        distinct: list[list[list[int]]] = []
        for _, trace in traces:          # a single arm's trace once, each of two arms
            if trace not in distinct:
                distinct.append(trace)
                images[0] = draw_trace(images[0], trace)
        answer += [Piece(OTHER, DRAWN_LEAD), *action_pieces(bins), Piece(OTHER, ".")]
        return Sample("drawn", f"The task is {task}. {DRAWN_QUESTION}", answer, images, cameras,
                      bins, None, reasoning)
    sentences: list[list[Piece]] = []
    if "depth" in options.parts:
        sentences.append([Piece(OTHER, "The depth map of the image is "),
                          Piece(DEPTH, depth_text(codes)), Piece(OTHER, ".")])
    shown = traces if "trace" in options.parts else []
    for label, trace in shown:
        sentences.append([Piece(OTHER, f"The trajectory of the {label}end effector is "),
                          Piece(TRACE, trace_text(trace)), Piece(OTHER, ".")])
    lead = "Based on this information, the " if sentences else "The "
    sentences.append([Piece(OTHER, lead + ACTION_LEAD), *action_pieces(bins), Piece(OTHER, ".")])
    for i, sentence in enumerate(sentences):
        answer += ([Piece(OTHER, " ")] if i else []) + sentence
    points = [p for _, trace in shown for p in trace] or None
    return Sample(VARIANTS[options.parts], reasoning_question(task, options), answer, images,
                  cameras, bins, points, reasoning)


def reasoning_question(task: str, options: SampleOptions) -> str:
    """The question of the options' reasoning variant (what `predict` asks)."""
    key = ("depth" in options.parts, "trace" in options.parts)
    return f"The task is {task}. " + QUESTION[key].format(task=task)
