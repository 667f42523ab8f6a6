"""Image validation decodes JPEGs at 1/8 scale: the same verdicts and messages as a full decode,
and the stored size, not the reduced one."""
from __future__ import annotations

import numpy as np
import pytest

from schemas.episode import check_image, encode_jpeg, encode_png, load_image


def frame(h: int = 96, w: int = 128) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def verdict(fn, data: bytes):
    try:
        return fn(data)
    except ValueError as exc:
        return str(exc)


def test_size_is_the_stored_size():
    assert check_image(encode_jpeg(frame())) == (128, 96)
    assert check_image(encode_png(frame(10, 20))) == (20, 10)


@pytest.mark.parametrize("damage", ["half", "tail", "header", "garbage_middle", "garbage_all"])
def test_damaged_jpeg_fails_like_a_full_decode(damage):
    data = encode_jpeg(frame())
    n = len(data)
    rng = np.random.default_rng(1)
    bad = {"half": data[:n // 2], "tail": data[:-8], "header": data[:300],
           "garbage_middle": data[:n // 3] + rng.bytes(n // 3) + data[2 * n // 3:],
           "garbage_all": data[:2] + rng.bytes(n // 2)}[damage]
    full = verdict(lambda d: load_image(d).size, bad)
    if damage != "garbage_middle":   # libjpeg may decode mid-stream garbage without an error
        assert isinstance(full, str) and "cannot decode image" in full
    assert verdict(check_image, bad) == full
