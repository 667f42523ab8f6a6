"""A row's sample (`trainer/sample_form.py`) tokenized for one model's processor.

The prompt goes through the model's own processor and chat template (image placeholders expand
there). The answer text is tokenized as a whole, as MolmoAct tokenizes its answer string; with
`action_format="ids"` each action bin is instead the single id of SPEC §4 and the text between
them is tokenized run by run. Labels are -100 everywhere but the answer. `kinds` marks answer
positions: 1 action, 2 depth code, 3 trace (a token that covers part of a piece has its kind).
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from armdata.trainer.sample_form import ACTION, OTHER, Piece, SampleOptions, build_sample

IGNORE = -100


def prompt_text(processor: Any, text: str, images: int) -> str:
    content = [{"type": "image"}] * images + [{"type": "text", "text": text}]
    return processor.apply_chat_template([{"role": "user", "content": content}],
                                         add_generation_prompt=True, tokenize=False)


class Formatter:
    """Row → tokenized sample for one model's processor; built once per loader worker."""

    def __init__(self, processor: Any, tables: dict[str, Any], options: SampleOptions):
        self.processor, self.tables, self.options = processor, tables, options
        self.tok = processor.tokenizer
        self.eos = [self.tok.eos_token_id]

    def answer_ids(self, pieces: list[Piece]) -> tuple[list[int], list[int], list[int]]:
        """(ids, kinds, piece): each answer token's id, kind and the index of the ACTION piece it
        covers (-1 for none)."""
        ids: list[int] = []
        kinds: list[int] = []
        owner: list[int] = []
        run: list[int] = []           # indices of the pieces tokenized together

        def flush() -> None:
            if not run:
                return
            text = "".join(pieces[i].text for i in run)
            lengths = [len(pieces[i].text) for i in run]
            char_kind = np.repeat([pieces[i].kind for i in run], lengths)
            char_piece = np.repeat([i if pieces[i].kind == ACTION else -1 for i in run], lengths)
            enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
            for token, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]):
                ids.append(token)
                kinds.append(int(char_kind[start:end].max()) if end > start else OTHER)
                owner.append(int(char_piece[start:end].max()) if end > start else -1)
            run.clear()

        for i, piece in enumerate(pieces):
            if piece.kind == ACTION and self.options.action_format == "ids":
                flush()
                ids.append(self.tables["action"][piece.bin - 1])
                kinds.append(ACTION)
                owner.append(i)
            else:
                run.append(i)
        flush()
        return ids, kinds, owner

    def __call__(self, row: dict[str, Any], rng: np.random.Generator,
                 counters: dict[str, int]) -> dict[str, Any]:
        s = build_sample(row, self.options, rng)
        if s.variant == "drawn":
            counters["drawn_trace"] = counters.get("drawn_trace", 0) + 1
        if s.with_reasoning:
            counters["with_reasoning"] = counters.get("with_reasoning", 0) + 1
        answer, kinds, owner = self.answer_ids(s.answer)
        answer += self.eos
        kinds.append(OTHER)
        owner.append(-1)
        # Answer positions of the first step's action tokens, one list per action dimension
        # (eval's action_l1 reads the predicted bins there, in either action format).
        first = [i for i, p in enumerate(s.answer) if p.kind == ACTION][:s.bins.shape[-1]]
        spans = [[t for t, o in enumerate(owner) if o == i] for i in first]

        prompt = self.processor(text=[prompt_text(self.processor, s.question, len(s.images))],
                                images=s.images, return_tensors="pt")
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
                          "variant": s.variant, "trace": s.trace, "size": s.images[0].size,
                          "bins": s.bins.tolist(), "action_spans": spans}
        return sample


TRACE_RE = re.compile(r"\[\s*(\d+)\s*,\s*(\d+)\s*\]")


def parse_trace(text: str) -> list[list[int]]:
    return [[int(x), int(y)] for x, y in TRACE_RE.findall(text)]
