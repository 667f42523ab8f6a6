"""Image validation: JPEGs are checked by walking their marker structure (`armdata.schemas.jpeg`), other
formats by decoding. The check must reject every damaged file a full decode rejects, accept every
valid JPEG variant, and report the stored size."""
from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from PIL import Image

from armdata.schemas import jpeg as structure
from armdata.schemas.episode import DataError, check_image, encode_jpeg, encode_png, load_image


def frame(h: int = 96, w: int = 128) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def jpeg(array: np.ndarray, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", **options)
    return buf.getvalue()


def verdict(fn, data: bytes):
    try:
        return fn(data)
    except ValueError as exc:
        return str(exc)


def test_size_is_the_stored_size():
    assert check_image(encode_jpeg(frame())) == (128, 96)
    assert check_image(encode_png(frame(10, 20))) == (20, 10)


@pytest.mark.parametrize("options", [
    {}, {"progressive": True}, {"quality": 40, "subsampling": 2}, {"optimize": True},
    {"restart_marker_blocks": 2}, {"progressive": True, "restart_marker_rows": 1},
    {"exif": b"Exif\x00\x00" + bytes(64)}, {"comment": b"made by a camera"}])
def test_valid_jpeg_variants_pass(options):
    data = jpeg(frame(50, 70), **options)
    assert load_image(data).size == check_image(data) == (70, 50)
    assert check_image(jpeg(frame(33, 17)[..., 0], **options)) == (17, 33)   # grayscale
    assert check_image(data + b"\x00trailing bytes after EOI") == (70, 50)


@pytest.mark.parametrize("damage", ["half", "tail", "header", "garbage_middle", "garbage_all",
                                    "no_soi", "empty_scan"])
def test_damaged_jpeg_is_rejected_with_a_reason(damage):
    data = encode_jpeg(frame())
    n = len(data)
    rng = np.random.default_rng(1)
    bad = {"half": data[:n // 2], "tail": data[:-8], "header": data[:300],
           "garbage_middle": data[:n // 3] + rng.bytes(n // 3) + data[2 * n // 3:],
           "garbage_all": data[:2] + rng.bytes(n // 2),
           "no_soi": data[2:],
           "empty_scan": data[:data.index(b"\xff\xda")] + b"\xff\xd9"}[damage]
    full = verdict(lambda d: load_image(d).size, bad)
    if damage != "garbage_middle":   # libjpeg may decode mid-stream garbage without an error
        assert isinstance(full, str) and "cannot decode image" in full
    ours = verdict(check_image, bad)
    assert isinstance(ours, str) and ours.startswith(f"cannot decode image ({len(bad)} bytes): ")


def test_every_truncation_is_rejected():
    """Cutting a JPEG anywhere before its end-of-image marker fails the check, as it fails a
    full decode."""
    data = jpeg(frame(40, 40), restart_marker_blocks=1)
    for cut in range(1, len(data) - 1):
        with pytest.raises(DataError):
            check_image(data[:cut])


def test_restart_markers_out_of_order_are_rejected():
    data = bytearray(jpeg(frame(40, 40), restart_marker_blocks=1))
    at = data.index(b"\xff\xd3")
    data[at + 1] = 0xD5
    with pytest.raises(DataError, match="restart markers out of order"):
        check_image(bytes(data))


def test_non_jpeg_formats_are_decoded():
    png = encode_png(frame(10, 20))
    assert check_image(png) == (20, 10)
    with pytest.raises(DataError, match="cannot decode image"):
        check_image(png[:len(png) // 2])
    with pytest.raises(DataError, match="cannot decode image"):
        check_image(b"neither jpeg nor png")


def scan_end_by_definition(data: bytes, start: int) -> int | str:
    """`scan_end` one 0xff at a time, as JPEG defines entropy-coded data."""
    pos, expected = start, 0xD0
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return "truncated"
        follower = data[pos + 1]
        if 0xD0 <= follower <= 0xD7:
            if follower != expected:
                return "restart markers out of order"
            expected = 0xD0 + (expected - 0xD0 + 1) % 8
        elif follower:
            return pos
        pos += 2


def test_scan_end_follows_the_definition():
    rng = np.random.default_rng(2)
    alphabet = np.array([0x00, 0xFF, 0xFF, 0xD0, 0xD1, 0xD2, 0xD9, 0x12], np.uint8)
    for _ in range(3000):
        data = rng.choice(alphabet, rng.integers(0, 24)).tobytes()
        start = int(rng.integers(0, len(data) + 1))
        expected = scan_end_by_definition(data, start)
        try:
            assert structure.scan_end(data, start) == expected, data
        except structure.JpegError as exc:
            assert isinstance(expected, str) and str(exc).startswith(expected), (data, exc)


def test_scan_end_skips_stuffed_bytes_without_a_python_step_each():
    """Entropy-coded data holds many stuffed 0xff00 pairs (~130 in a 256x256 frame): the scan
    makes a few calls per restart marker, not one per 0xff (4,100 here before)."""
    data = (b"\x12" + b"\xff\x00\x34" * 4000 + b"\xff\xd0\x56\xff\xd1" + b"\xff\x00" * 99
            + b"\xff\xd9")
    calls = []
    sys.setprofile(lambda frame, event, arg: calls.append(arg) if event == "c_call" else None)
    try:
        end = structure.scan_end(data, 0)
    finally:
        sys.setprofile(None)
    assert end == len(data) - 2
    assert len(calls) < 20, len(calls)
