"""Loading `.pt` files without running their code: every torch.load in armdata goes through here,
with weights_only=True (tensors and plain Python values; a pickled object such as a `__reduce__`
calling os.system is refused before it runs)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

# torch.load's messages run to several paragraphs; a refusal keeps at most this much, in sentences.
MAX_PROBLEM_CHARS = 240


def first_sentences(text: str, limit: int = MAX_PROBLEM_CHARS) -> str:
    """Whole sentences of `text` (whitespace folded) up to `limit` characters, at least one."""
    sentences = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    kept = sentences[0]
    for s in sentences[1:]:
        if len(kept) + 1 + len(s) > limit:
            break
        kept += " " + s
    return kept.rstrip(".")


def checkpoint_problem(exc: Exception, refused_hint: str = "") -> str:
    """torch.load's multi-paragraph error in a few words (`refused_hint` follows a refused
    object: what to save instead)."""
    text = str(exc)
    unpickler = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed| Please|\n\n|$)",
                          text, re.S)
    # torch words a global from a blocked module (os, subprocess, ...) differently.
    blocked = re.search(r"unsupported (GLOBAL \S+) whose module \S+ is blocked", text)
    if blocked:
        return (f"it contains Python objects that weights-only loading refuses (Unsupported "
                f"global: {blocked.group(1)}){refused_hint}")
    if unpickler:
        what = " ".join(unpickler.group(1).split())
        if what.startswith("Unsupported global"):
            return (f"it contains Python objects that weights-only loading refuses ({what})"
                    f"{refused_hint}")
        return f"not a torch checkpoint ({what})"
    return first_sentences(text) or type(exc).__name__


def load_weights_only(path: str | Path, what: str, map_location: Any = "cpu",
                      refused_hint: str = "") -> Any:
    """torch.load(weights_only=True), any failure (not a torch file, truncated, refused object)
    as one ValueError line: `{path}: cannot load the {what}: {problem}`."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot load the {what}: "
                         f"{checkpoint_problem(exc, refused_hint)}") from exc
