"""MolmoAct's training sample (SPEC §8) from one armdata row, tokenized.

The prompt goes through the model's own processor and chat template (image placeholders expand
there); the answer is built from id segments so that each action bin is the single id of SPEC §4
(or, with `action_format="text"`, MolmoAct's token strings re-tokenized as text). Labels are -100
everywhere but the answer. `kinds` marks answer positions: 1 action, 2 depth code, 3 trace.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from armdata.schemas.output import image_bytes
from armdata.transforms.actions import bin_strings

OTHER, ACTION, DEPTH, TRACE = 0, 1, 2, 3
IGNORE = -100

QUESTION = {
    # (has depth, has trace) → the question after "The task is {task}."
    (True, True): (
        "What is the action that the robot should take. To figure out the action that the robot "
        "should take to {task}, let's think through it step by step. First, what is the depth map "
        "for the first image? Second, what is the trajectory of the end effector in the first "
        "image? Based on the depth map of the first image and the trajectory of the end effector in "
        "the first image, along with other images from different camera views as additional "
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
        "of the end effector in the first image? Based on the trajectory of the end effector in the "
        "first image, along with other images from different camera views as additional "
        "information, what is the action that the robot should take?"),
    (False, False): "What is the action that the robot should take?",
}
DRAWN_QUESTION = ("Based on the image and the annotated trajectory of the end effector, what is the "
                  "action that the robot should take to {task}?")
ACTION_LEAD = "action that the robot should take is "


class CorruptImage(ValueError):
    """An image cell that does not decode; the loader skips the row and counts it."""


def read_image(cell: Any) -> Image.Image | None:
    """An image cell (schema v2 struct or v1 bytes) decoded to RGB; CorruptImage if it is not."""
    try:
        data = image_bytes(cell)
    except TypeError as exc:
        raise CorruptImage(str(exc)) from exc
    if data is None:
        return None
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # PIL raises several types for truncated/garbage data
        raise CorruptImage(f"image does not decode: {exc}") from exc
    return image.convert("RGB")


def draw_trace(image: Image.Image, trace: list[list[int]]) -> Image.Image:
    """The trace (0..255 grid) drawn as a polyline with its end point marked, on a copy."""
    out = image.copy()
    w, h = out.size
    pts = [(x * w / 256.0, y * h / 256.0) for x, y in trace]
    draw = ImageDraw.Draw(out)
    width = max(1, round(min(w, h) / 64))
    if len(pts) > 1:
        draw.line(pts, fill=(255, 0, 0), width=width)
    x, y = pts[-1]
    draw.ellipse((x - 2 * width, y - 2 * width, x + 2 * width, y + 2 * width), outline=(255, 0, 0),
                 width=width)
    return out


@dataclass
class SampleOptions:
    chunk: bool = True                  # the 8-step chunk (action_chunk_bins) or one step
    action_format: str = "ids"          # "ids": one id per bin; "text": MolmoAct's token strings
    with_reasoning: bool = False
    reasoning_dropout: float = 0.5      # ECoT-Lite: fraction of samples without the reasoning
    drawn_trace: float = 0.0            # probability of the trace-drawn-on-image variant
    wrist: bool = False                 # add the wrist image as a second image
    parts: tuple[str, ...] = ("depth", "trace")   # what the answer reasons through before the action

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "parts": list(self.parts)}


def question(task: str, has_depth: bool, has_trace: bool, drawn: bool = False) -> str:
    body = DRAWN_QUESTION if drawn else QUESTION[(has_depth, has_trace)]
    return f"The task is {task}. " + body.format(task=task)


def prompt_text(processor: Any, text: str, images: int) -> str:
    content = [{"type": "image"}] * images + [{"type": "text", "text": text}]
    return processor.apply_chat_template([{"role": "user", "content": content}],
                                         add_generation_prompt=True, tokenize=False)


def arm_traces(row: dict[str, Any]) -> list[tuple[str, list[list[int]]]]:
    """[(label, trace)]: one unnamed trace, or left/right for bimanual rows."""
    if row.get("arm_traces"):
        arms = json.loads(row["arm_traces"])
        return [(f"{a['arm']} ", a["trace"]) for a in arms if a.get("trace")]
    return [("", row["trace"])] if row.get("trace") else []


class Formatter:
    """Row → tokenized sample for one model's processor; built once per loader worker."""

    def __init__(self, processor: Any, tables: dict[str, Any], options: SampleOptions):
        self.processor, self.tables, self.options = processor, tables, options
        self.tok = processor.tokenizer
        self.eos = [self.tok.eos_token_id]
        self._text_cache: dict[str, list[int]] = {}

    def text_ids(self, text: str) -> list[int]:
        ids = self._text_cache.get(text)
        if ids is None:
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            if len(self._text_cache) < 4096:   # constant pieces repeat on every row
                self._text_cache[text] = ids
        return ids

    def action_segments(self, bins: np.ndarray) -> list[tuple[int, list[int]]]:
        """[[t, t, ...], ...] (chunk) or [t, ...] as (kind, ids) segments."""
        rows = bins if bins.ndim == 2 else bins[None]
        segs: list[tuple[int, list[int]]] = [(OTHER, self.text_ids("[" if bins.ndim == 1 else "[["))]
        for r, step in enumerate(rows):
            if r:
                segs.append((OTHER, self.text_ids("], [")))
            for j, b in enumerate(step):
                if j:
                    segs.append((OTHER, self.text_ids(", ")))
                if self.options.action_format == "ids":
                    segs.append((ACTION, [self.tables["action"][int(b) - 1]]))
                else:
                    segs.append((ACTION, self.text_ids(bin_strings()[int(b) - 1])))
        segs.append((OTHER, self.text_ids("]" if bins.ndim == 1 else "]]")))
        return segs

    def action_bins(self, row: dict[str, Any]) -> np.ndarray:
        key = "action_chunk_bins" if self.options.chunk else "action_bins"
        if row.get(key) is None:
            raise ValueError(f"row has no {key} (build with the actions stage)")
        return np.asarray(row[key], np.int64)

    def __call__(self, row: dict[str, Any], rng: np.random.Generator,
                 counters: dict[str, int]) -> dict[str, Any]:
        opts = self.options
        image = read_image(row["image"])
        if image is None:
            raise CorruptImage("row has no image")
        images = [image]
        if opts.wrist and row.get("wrist_image") is not None:
            images.append(read_image(row["wrist_image"]))
        task = (row.get("instruction") or "").strip().rstrip(".")
        codes = row.get("depth_codes") if "depth" in opts.parts else None
        traces = arm_traces(row) if "trace" in opts.parts else []
        bins = self.action_bins(row)
        drawn = bool(traces) and opts.drawn_trace > 0 and rng.random() < opts.drawn_trace
        segs: list[tuple[int, list[int]]] = []
        if opts.with_reasoning and row.get("reasoning") and rng.random() >= opts.reasoning_dropout:
            segs.append((OTHER, self.text_ids(row["reasoning"].strip() + " ")))
            counters["with_reasoning"] = counters.get("with_reasoning", 0) + 1
        if drawn:
            images[0] = draw_trace(images[0], traces[0][1])
            counters["drawn_trace"] = counters.get("drawn_trace", 0) + 1
            q = question(task, False, False, drawn=True)
            segs.append((OTHER, self.text_ids("Based on the image and the annotated trajectory of "
                                              "the end effector, the " + ACTION_LEAD)))
        else:
            if codes is None and "depth" in opts.parts:
                counters["no_depth"] = counters.get("no_depth", 0) + 1
            if not traces and "trace" in opts.parts:
                counters["no_trace"] = counters.get("no_trace", 0) + 1
            q = question(task, codes is not None, bool(traces))
            if codes is not None:
                t = self.tables
                segs += [(OTHER, self.text_ids("The depth map of the image is ")),
                         (OTHER, [t["depth_start"]]),
                         (DEPTH, [t["depth"][int(c)] for c in codes]),
                         (OTHER, [t["depth_end"]] + self.text_ids("."))]
            for label, trace in traces:
                text = "[" + ", ".join(f"[{int(x)}, {int(y)}]" for x, y in trace) + "]"
                lead = " " if segs else ""
                segs += [(OTHER, self.text_ids(f"{lead}The trajectory of the {label}end effector is ")),
                         (TRACE, self.text_ids(text)), (OTHER, self.text_ids("."))]
            lead = " " if segs else ""
            start = "Based on this information, the " if (codes is not None or traces) else "The "
            segs.append((OTHER, self.text_ids(lead + start + ACTION_LEAD)))
        segs += self.action_segments(bins)
        segs.append((OTHER, self.text_ids(".") + self.eos))

        prompt = self.processor(text=[prompt_text(self.processor, q, len(images))], images=images,
                                return_tensors="pt")
        answer = [i for _, ids in segs for i in ids]
        kinds = [k for k, ids in segs for _ in ids]
        n_prompt, n_answer = prompt["input_ids"].shape[1], len(answer)
        sample: dict[str, Any] = {}
        for key, value in prompt.items():
            if torch.is_tensor(value) and value.ndim == 2 and value.shape == prompt["input_ids"].shape:
                fill = answer if key == "input_ids" else [1 if key == "attention_mask" else 0] * n_answer
                sample[key] = torch.cat([value[0], torch.tensor(fill, dtype=value.dtype)])
            else:
                sample[key] = value
        sample["labels"] = torch.tensor([IGNORE] * n_prompt + answer)
        sample["kinds"] = torch.tensor([OTHER] * n_prompt + kinds, dtype=torch.int8)
        sample["meta"] = {"dataset": row.get("dataset"), "episode_id": row.get("episode_id"),
                          "step": row.get("step"), "action": row.get("action"),
                          "trace": traces[0][1] if traces and not drawn else None,
                          "size": images[0].size, "bins": bins.tolist()}
        return sample


TRACE_RE = re.compile(r"\[\s*(\d+)\s*,\s*(\d+)\s*\]")


def parse_trace(text: str) -> list[list[int]]:
    return [[int(x), int(y)] for x, y in TRACE_RE.findall(text)]
