"""Check a JPEG's structure without decoding it: the validate stage's per-frame check.

A JPEG is a chain of marker segments (SOI, tables, a frame header, one or more scans of
entropy-coded data, EOI). Walking that chain catches what damaged files have in practice
(truncation anywhere, a cut header, garbage in place of data, restart markers out of order) at
a fifth of the cost of a 1/8-scale decode. Damage that keeps the structure intact (flipped bits
inside the entropy-coded data) is not caught here; libjpeg does not fail on it either, it only
warns and decodes a wrong picture.
"""
from __future__ import annotations

import re

SOI, EOI, SOS, DQT = 0xD8, 0xD9, 0xDA, 0xDB
RST0, RST7, TEM = 0xD0, 0xD7, 0x01
# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic).
SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# An 0xff that is not a stuffed 0xff00: a restart marker or the end of entropy-coded data.
MARKER_IN_SCAN = re.compile(rb"\xff[^\x00]")


class JpegError(ValueError):
    """The data is not a structurally complete JPEG."""


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a JPEG whose marker structure is complete from SOI to EOI, with a frame
    header, a quantization table and at least one scan. Raises JpegError naming the byte offset
    of the problem. Bytes after EOI are ignored, as decoders do."""
    n = len(data)
    if data[:2] != b"\xff\xd8":
        raise JpegError("no JPEG start-of-image marker")
    pos, size, has_tables, scans = 2, None, False, 0
    while True:
        if pos + 1 >= n:
            raise JpegError(f"truncated: the data ends at byte {n} before the end-of-image marker")
        if data[pos] != 0xFF:
            raise JpegError(f"expected a marker at byte {pos}, found 0x{data[pos]:02x}")
        marker = data[pos + 1]
        if marker == 0xFF:          # fill byte before a marker
            pos += 1
            continue
        if marker == EOI:
            if not scans:
                raise JpegError(f"end-of-image marker at byte {pos} before any image data")
            return size   # type: ignore[return-value]   # a scan implies a frame header
        if marker == TEM:
            pos += 2
            continue
        if marker < 0xC0 or marker == SOI or RST0 <= marker <= RST7:
            raise JpegError(f"invalid marker 0xff{marker:02x} at byte {pos}")
        if pos + 4 > n:
            raise JpegError(f"truncated: segment 0xff{marker:02x} at byte {pos} is cut off")
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if end > n or end < pos + 4:
            raise JpegError(f"truncated: segment 0xff{marker:02x} at byte {pos} runs past the "
                            f"end of the data ({n} bytes)")
        if marker in SOF:
            size = frame_size(data[pos + 4:end], pos)
        elif marker == DQT:
            has_tables = True
        elif marker == SOS:
            if size is None or not has_tables:
                raise JpegError(f"scan at byte {pos} before the "
                                f"{'frame header' if size is None else 'quantization tables'}")
            scans += 1
            end = scan_end(data, end)
        pos = end


def frame_size(header: bytes, pos: int) -> tuple[int, int]:
    """(width, height) from a start-of-frame segment's body."""
    if len(header) < 6:
        raise JpegError(f"frame header at byte {pos} is too short")
    height = int.from_bytes(header[1:3], "big")
    width = int.from_bytes(header[3:5], "big")
    components = header[5]
    if not width or not height or not components or len(header) != 6 + 3 * components:
        raise JpegError(f"bad frame header at byte {pos}: {width}x{height}, "
                        f"{components} components")
    return width, height


def scan_end(data: bytes, start: int) -> int:
    """Offset of the marker that ends the entropy-coded data starting at `start`. Inside that
    data every 0xff is followed by a stuffed 0x00 or by the next restart marker in the cycle
    RST0..RST7; the first 0xff followed by anything else is the next marker. (A 256x256 frame
    holds ~130 stuffed bytes: the regular expression skips them in C, one Python step per
    restart marker instead of one per 0xff.)"""
    search, n = MARKER_IN_SCAN.search, len(data)
    pos, expected, restarts = start, RST0, 0
    while True:
        found = search(data, pos)
        if found is None:
            raise JpegError(f"truncated: the image data from byte {start} runs to the end of "
                            f"the data ({n} bytes) without an end-of-image marker")
        pos = found.start()
        follower = data[pos + 1]
        if not RST0 <= follower <= RST7:
            return pos
        if follower != expected:
            raise JpegError(f"restart markers out of order at byte {pos} (marker "
                            f"{restarts} is 0xff{follower:02x}, expected 0xff{expected:02x})")
        expected = RST0 + (restarts + 1) % 8
        restarts += 1
        pos += 2
