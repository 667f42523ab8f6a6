"""Run a trained model on one image and parse its answer: depth codes, trace points, action bins
and de-normalized actions. Action ids are rendered as their Qwen2 token strings, so both action
formats parse from the same text (SPEC §4's chunk form), and both sample forms' answers parse
(fine-tune: a left and a right trace; pre-train: one)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from armdata.errors import UsageError
from armdata.trainer.sample_form import (ACTION_LEAD, CorruptImage, SampleOptions, read_image,
                                         reasoning_question)
from armdata.trainer.samples import parse_trace, prompt_text
from armdata.trainer.tokens import token_tables
from armdata.transforms.actions import bin_strings, decode

DEPTH_RE = re.compile(r"<DEPTH_(\d+)>")
TRACE_SENTENCE_RE = re.compile(r"trajectory of the (?:(left|right) )?end effector is "
                               r"(\[\s*\[.*?\]\s*\])\s*\.")


def answer_text(ids: list[int], tokenizer: Any, tables: dict[str, Any]) -> str:
    """Decoded answer with every action id written as its token string."""
    strings = dict(zip(tables["action"], bin_strings()))
    text, run = [], []
    for i in ids + [None]:
        if i in strings or i is None:
            if run:
                text.append(tokenizer.decode(run, skip_special_tokens=True))
                run = []
            if i is not None:
                text.append(strings[i])
        else:
            run.append(i)
    return "".join(text)


def parse_answer(text: str) -> dict[str, Any]:
    """Depth codes, trace(s) with their arms ("left", "right", or None for the pre-training
    form's one end effector) and action bins (one list of 7 per step) from an answer's text."""
    out: dict[str, Any] = {"depth_codes": [int(c) for c in DEPTH_RE.findall(text)]}
    found = TRACE_SENTENCE_RE.findall(text)
    out["traces"] = [parse_trace(t) for _, t in found]
    out["trace_arms"] = [arm or None for arm, _ in found]
    bins_of = {s: b + 1 for b, s in enumerate(bin_strings())}
    head, _, tail = text.rpartition(ACTION_LEAD)
    steps = []
    if _:
        for part in re.findall(r"\[([^\[\]]*)\]", tail):
            toks = [t.strip() for t in part.split(",")]
            steps.append([bins_of.get(t) for t in toks])
    out["action_bins"] = steps
    return out


def load(model_dir: str | Path, device: str) -> tuple[Any, Any, SampleOptions]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = Path(model_dir)
    if (path / "model").is_dir():          # a checkpoint directory
        path = path / "model"
    trainer_file = path / "armdata_trainer.json"   # first: a refused model is never loaded
    options = (SampleOptions.from_json(json.loads(trainer_file.read_text()), str(trainer_file))
               if trainer_file.exists() else SampleOptions())
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(
        path, dtype=torch.bfloat16 if device.startswith("cuda") else torch.float32).to(device).eval()
    return model, processor, options


def predict(model: Any, processor: Any, images: list[Any], instruction: str,
            stats: dict[str, Any] | None = None, max_new_tokens: int = 600,
            options: SampleOptions | None = None) -> dict[str, Any]:
    """The model's answer to its training question (the reasoning variant of the form and parts
    it was trained on, the instruction verbatim), parsed."""
    question = reasoning_question(instruction, options or SampleOptions())
    prompt = prompt_text(processor, question, len(images))
    inputs = processor(text=[prompt], images=images, return_tensors="pt").to(model.device)
    with torch.inference_mode():
        ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new = ids[0, inputs["input_ids"].shape[1]:].tolist()
    tables = token_tables(processor.tokenizer)
    text = answer_text(new, processor.tokenizer, tables)
    result = {"text": text, **parse_answer(text)}
    complete = [s for s in result["action_bins"] if s and None not in s]
    if stats and complete:
        result["actions"] = decode(np.asarray(complete), stats["q01"], stats["q99"],
                                   stats.get("mask")).tolist()
    return result


def action_stats(path: Path, dataset: str | None) -> dict[str, Any]:
    """The `action` entry of one dataset in a dataset_statistics.json."""
    stats = json.loads(path.read_text())
    if dataset is None:
        if len(stats) != 1:
            raise ValueError(f"{path} holds {sorted(stats)}: choose one with --dataset")
        dataset = next(iter(stats))
    if dataset not in stats:
        raise ValueError(f"{path} has no dataset {dataset!r} (has {sorted(stats)})")
    return stats[dataset]["action"]


def run(args: Any) -> int:
    images = []
    for flag, path in (("--image", args.image), ("--wrist-image", args.wrist_image)):
        try:
            images += [read_image(Path(path).read_bytes())] if path else []
        except CorruptImage as exc:
            raise UsageError(f"{flag} {path}: {exc}") from exc
    model, processor, options = load(args.model, args.device)
    stats_path = Path(args.stats) if args.stats else None
    if stats_path is None:
        base = Path(args.model) / ("model" if (Path(args.model) / "model").is_dir() else "")
        stats_path = base / "dataset_statistics.json"
        stats_path = stats_path if stats_path.exists() and json.loads(stats_path.read_text()) else None
    stats = action_stats(stats_path, args.dataset) if stats_path else None
    result = predict(model, processor, images, args.instruction, stats, args.max_new_tokens,
                     options)
    print(json.dumps(result) if args.json else "\n".join(readable(result)))
    return 0


def readable(result: dict[str, Any], width: int = 8) -> list[str]:
    """predict's parsed answer as a few lines of text (`--json` gives all of it)."""
    def head(values: list[Any]) -> str:
        more = f" ... ({len(values)} in all)" if len(values) > width else ""
        return " ".join(str(v) for v in values[:width]) + more

    lines = [f"depth tokens: {len(result['depth_codes'])}"
             + (f" ({head(result['depth_codes'])})" if result["depth_codes"] else "")]
    arms = result.get("trace_arms") or [None] * len(result["traces"])
    traces = [(arm, t) for arm, t in zip(arms, result["traces"]) if t]
    lines.append("trace: " + ("; ".join(f"{arm + ' ' if arm else ''}{json.dumps(t)}"
                                        for arm, t in traces) or "none found"))
    bins = result["action_bins"]
    lines.append(f"action bins ({len(bins)} step(s)): "
                 + ("; ".join(head(["?" if b is None else b for b in step]) for step in bins[:2])
                    if bins else "none found") + (" ..." if len(bins) > 2 else ""))
    if "actions" in result:
        lines.append("action (de-normalised, first step): "
                     + " ".join(f"{v:.3f}" for v in result["actions"][0]))
    else:
        complete = any(step and None not in step for step in bins)
        lines.append("action (de-normalised): none ("
                     + ("no dataset statistics" if complete else "no complete step of bins") + ")")
    return lines
