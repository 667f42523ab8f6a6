"""`armdata samples OUTPUT`: what `armdata train` would feed the model for the first rows of a
built dataset (question, answer, images), made by the trainer's own sample code
(`trainer/sample_form.py`); no model or tokenizer is loaded."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from armdata.errors import UsageError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from armdata.trainer.sample_form import add_sample_arguments

    p = subparsers.add_parser("samples", help="print the training samples of a built dataset's "
                                              "first rows (no model needed)")
    p.add_argument("output", help="a directory written by `armdata build` (local, gs://, hf://)")
    p.add_argument("--n", type=int, default=3, help="rows to show, in shard order (default 3)")
    p.add_argument("--seed", type=int, default=0,
                   help="the training run's --seed: each row gets the variant epoch 0 draws for it")
    p.add_argument("--json", action="store_true", help="one JSON object per sample")
    p.add_argument("--images", metavar="DIR",
                   help="write the images given to the model (the trace drawn where the sample "
                        "draws it) into DIR as PNG")
    add_sample_arguments(p)
    p.set_defaults(func=run)


def record(row: dict[str, Any], sample: Any, options: Any, images: list[str]) -> dict[str, Any]:
    return {"episode_id": row.get("episode_id"), "step": row.get("step"),
            "form": options.sample_form, "action_format": options.action_format,
            "variant": sample.variant, "question": sample.question,
            "answer": sample.answer_text, "images": images}


def readable(rec: dict[str, Any], number: int) -> str:
    return (f"--- sample {number}: episode {rec['episode_id']} step {rec['step']} "
            f"({rec['form']} form, {rec['variant']}, {rec['action_format']} actions; images: "
            f"{', '.join(rec['images'])})\nquestion: {rec['question']}\nanswer: {rec['answer']}\n")


def run(args: argparse.Namespace) -> int:
    from armdata.trainer.data import RowStream, open_source
    from armdata.trainer.sample_form import (SkippedRow, build_sample, check_stages,
                                             sample_options, sample_rng)

    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}")
    options = sample_options(args)
    try:
        source = open_source(args.output)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{exc} (expected a directory written by `armdata build`)") from exc
    check_stages(args.output, source.stages, options)
    out = Path(args.images) if args.images else None
    if out is not None:
        if out.exists() and not out.is_dir():
            raise UsageError(f"--images {out} is a file, not a directory")
        out.mkdir(parents=True, exist_ok=True)
    rows = RowStream(source, source.units, [args.seed], block=1, shuffle=False).rows(0, epochs=1)
    shown = skipped = 0
    for i, row in zip(range(args.n), rows):
        try:
            sample = build_sample(row, options, sample_rng(args.seed, 0, row))
        except SkippedRow as exc:
            skipped += 1
            log.warning("episode %s step %s gives no sample (%s): %s", row.get("episode_id"),
                        row.get("step"), exc.reason, exc)
            continue
        names = list(sample.cameras)
        if out is not None:
            names = [str(out / f"{i:05d}_{camera}.png") for camera in sample.cameras]
            for image, path in zip(sample.images, names):
                image.save(path, format="PNG")
        rec = record(row, sample, options, names)
        shown += 1
        print(json.dumps(rec) if args.json else readable(rec, shown))
    log.info("%d sample(s) from the first %d row(s); %d row(s) skipped", shown, shown + skipped,
             skipped)
    return 0
