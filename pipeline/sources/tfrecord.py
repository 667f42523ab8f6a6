"""TFRecord files and `tf.train.Example` records, read without TensorFlow.

Importing TensorFlow costs every Beam worker several seconds and most of a gigabyte, and its
parser decodes every feature of a record, used or not. Both formats are small and stable:

- a TFRecord file is a chain of records `uint64 length | masked crc32c(length) | data |
  masked crc32c(data)`; both checksums are verified, so a truncated or corrupted file fails at
  the record where the damage is, with that record's byte offset;
- an Example is a protobuf `Features` map from key to a bytes, float or int64 list. `parse_example`
  walks the wire format and decodes only the keys asked for: an unused camera or depth map is
  skipped without being copied.
"""
from __future__ import annotations

import io
import queue
import struct
import threading
from typing import Any, Container, Iterator, TypeVar

import google_crc32c
import numpy as np

BYTES, FLOAT, INT64 = 1, 2, 3          # the `Feature` oneof field numbers
KIND_NAMES = {BYTES: "bytes_list", FLOAT: "float_list", INT64: "int64_list"}
_LEN, _VARINT, _FIXED64, _FIXED32 = 2, 0, 1, 5


T = TypeVar("T")


class RecordError(ValueError):
    """A TFRecord file or an Example in it is damaged; the message names the byte offset."""


def masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(f: Any, skip: int = 0, take: int | None = None) -> Iterator[bytes]:
    """The data of records [skip, skip + take) of an open TFRecord file, checksums verified.
    Skipped records are stepped over by their (checksummed) length, with a seek where the file
    allows one, so a slice deep into a shard does not read what it skips; damage inside them is
    reported by the slice that reads them. Ends quietly at the end of the file; raises
    RecordError at a truncated or corrupted record."""
    seek = f.seekable() if hasattr(f, "seekable") else False
    offset, index = 0, 0
    while take is None or index < skip + take:
        header = f.read(12)
        if not header:
            return
        if len(header) < 12:
            raise RecordError(f"truncated record at {offset}: {len(header)} of 12 header bytes")
        (length,), (crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
        if masked_crc(header[:8]) != crc:
            raise RecordError(f"corrupted record at {offset}: the length's checksum does not "
                              f"match")
        if index < skip and seek:
            f.seek(length + 4, io.SEEK_CUR)
        else:
            data, footer = f.read(length), f.read(4)
            if len(data) < length or len(footer) < 4:
                raise RecordError(f"truncated record at {offset}: {len(data) + len(footer)} of "
                                  f"{length + 4} bytes")
            if index >= skip:
                if masked_crc(data) != struct.unpack("<I", footer)[0]:
                    raise RecordError(f"corrupted record at {offset}: the data's checksum does "
                                      f"not match")
                yield data
        offset += 16 + length
        index += 1


def read_ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """What `items` yields, in order, produced by a thread that stays up to `depth` items ahead:
    reading and checksumming the next record (file I/O and C code, which release the GIL) run on
    another core while this one is decoded. An exception of `items` is raised here after the
    items before it. Closing this generator (a break, an error in the caller) stops the thread
    before it returns, so the caller may close the file `items` reads right after."""
    slots: queue.Queue[tuple[bool, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def put(done: bool, value: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put((done, value), timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(False, item):
                    return
            put(True, None)
        except BaseException as exc:   # handed to the consumer, raised there
            put(True, exc)

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            done, value = slots.get()
            if done:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        thread.join()


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise RecordError("malformed Example: a varint runs past the end")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, a, b) of each field in buf[start:end]: for length-delimited
    fields the payload's [a, b), for varints (value, 0), for fixed ones (offset, offset + size)."""
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == _LEN:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise RecordError("malformed Example: a field runs past its message")
            yield number, wire, pos, pos + size
            pos += size
        elif wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield number, wire, value, 0
        elif wire in (_FIXED32, _FIXED64):
            size = 4 if wire == _FIXED32 else 8
            yield number, wire, pos, pos + size
            pos += size
        else:
            raise RecordError(f"malformed Example: wire type {wire}")


def _signed(value: int) -> int:
    """An int64 from its varint (two's complement in 64 bits)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _int64s(buf: bytes, start: int, end: int) -> list[int]:
    values, pos = [], start
    while pos < end:
        value, pos = _varint(buf, pos)
        values.append(_signed(value))
    return values


def _feature(buf: bytes, start: int, end: int) -> tuple[int, Any]:
    """(kind, values) of a `Feature`: a list of bytes, a float32 array or an int64 array."""
    kind, values = BYTES, []
    for number, _, a, b in _fields(buf, start, end):
        if number not in KIND_NAMES:
            continue
        kind = number
        if kind == BYTES:
            values = [buf[x:y] for n, w, x, y in _fields(buf, a, b) if n == 1 and w == _LEN]
            continue
        parts = []
        for n, wire, x, y in _fields(buf, a, b):
            if n != 1:
                continue
            if kind == FLOAT and wire in (_LEN, _FIXED32):   # packed, or one fixed32 per value
                parts.append(np.frombuffer(buf, "<f4", (y - x) // 4, x))
            elif kind == INT64 and wire == _LEN:                # packed varints
                body = np.frombuffer(buf, np.uint8, y - x, x)
                parts.append(body.astype(np.int64) if not (body & 0x80).any()
                             else np.array(_int64s(buf, x, y), np.int64))
            elif kind == INT64 and wire == _VARINT:             # one varint per value
                parts.append(np.array([_signed(x)], np.int64))
            else:
                raise RecordError(f"malformed Example: a {KIND_NAMES[kind]} value of wire "
                                  f"type {wire}")
        dtype = np.float32 if kind == FLOAT else np.int64
        values = np.concatenate(parts).astype(dtype, copy=False) if parts \
            else np.zeros(0, dtype)
    return kind, values


def parse_example(record: bytes, keys: Container[str]) -> dict[str, tuple[int, Any]]:
    """{key: (kind, values)} of the Example's features whose key is in `keys`; the others are
    skipped undecoded. Raises RecordError on malformed data."""
    out: dict[str, tuple[int, Any]] = {}
    for number, wire, a, b in _fields(record, 0, len(record)):
        if number != 1 or wire != _LEN:
            continue
        for n, w, x, y in _fields(record, a, b):   # Features.feature: map entries
            if n != 1 or w != _LEN:
                continue
            key, value = None, None
            for field, wire_type, p, q in _fields(record, x, y):
                if field == 1 and wire_type == _LEN:
                    key = record[p:q].decode("utf-8", "replace")
                elif field == 2 and wire_type == _LEN:
                    value = (p, q)
            if key is not None and key in keys:
                out[key] = _feature(record, *value) if value else (BYTES, [])
    return out
