"""Evaluation metrics from teacher-forced predictions on answer tokens, summed over batches.

Action-token and depth-token accuracy compare the argmax id with the target; the L1 error
de-normalizes the predicted first step's bins with the dataset's statistics (OpenVLA's metric)
against the row's action: each bin is read from the predicted tokens at its target's positions
(one id, or the token string's text pieces), and one that is no bin counts as the middle bin; the
trace error parses the predicted trace tokens (both traces of the fine-tune form) and measures the
mean point distance in image pixels (unparsable traces or a wrong point count are counted, not
measured).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

from armdata.trainer.sample_form import ACTION, DEPTH, TRACE
from armdata.trainer.samples import parse_trace
from armdata.transforms.actions import NUM_BINS, bin_strings, decode


class EvalSums:
    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)

    def add(self, key: str, value: float, count: float = 1.0) -> None:
        self.sums[key] += value
        self.sums[key + "#n"] += count

    def vector(self, keys: list[str]) -> torch.Tensor:
        return torch.tensor([self.sums.get(k, 0.0) for k in keys], dtype=torch.float64)

    def result(self, sums: dict[str, float]) -> dict[str, float]:
        return {k: sums[k] / sums[k + "#n"] for k in sums
                if not k.endswith("#n") and sums.get(k + "#n", 0) > 0}


def add_batch(sums: EvalSums, loss_sum: float, pred: torch.Tensor, target: torch.Tensor,
              kinds: torch.Tensor, rows: torch.Tensor, meta: list[dict[str, Any]],
              tables: dict[str, Any], tokenizer: Any, stats: dict[str, Any]) -> None:
    """pred/target/kinds/rows: flat over the batch's answer tokens (rows = sample index)."""
    sums.add("loss", loss_sum, float(target.numel()))
    for kind, name in ((ACTION, "action_accuracy"), (DEPTH, "depth_accuracy")):
        m = kinds == kind
        if m.any():
            sums.add(name, float((pred[m] == target[m]).sum()), float(m.sum()))
    bin_of_id = {int(i): b + 1 for b, i in enumerate(tables["action"])}
    bin_of_text = {t: b + 1 for b, t in enumerate(bin_strings())}

    def predicted_bin(ids: list[int]) -> int:
        if len(ids) == 1 and ids[0] in bin_of_id:
            return bin_of_id[ids[0]]
        return bin_of_text.get(tokenizer.decode(ids).strip(), (NUM_BINS + 1) // 2)

    for r, info in enumerate(meta):
        mine = rows == r
        ds_stats = stats.get(info["dataset"], {}).get("action")
        spans = info.get("action_spans") or []
        if ds_stats and info.get("action") is not None and spans and all(spans):
            answer = pred[mine].tolist()
            bins = np.array([predicted_bin([answer[t] for t in span]) for span in spans])
            got = decode(bins, ds_stats["q01"], ds_stats["q99"], ds_stats.get("mask"))
            sums.add("action_l1", float(np.abs(got - np.asarray(info["action"])).mean()))
        tr = (kinds == TRACE) & mine
        if info.get("trace") and tr.any():
            points = parse_trace(tokenizer.decode(pred[tr].tolist()))
            if len(points) != len(info["trace"]):
                sums.add("trace_unparsed", 1.0)
                continue
            sums.add("trace_unparsed", 0.0)
            w, h = info["size"]
            d = (np.asarray(points, float) - np.asarray(info["trace"], float)) * [w / 256, h / 256]
            sums.add("trace_px", float(np.linalg.norm(d, axis=1).mean()))
