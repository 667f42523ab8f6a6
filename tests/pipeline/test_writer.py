"""Pure pieces of the writer: shard assignment, shard count, table assembly, rejection order."""
from __future__ import annotations

import collections
import hashlib
import json

import numpy as np
import pyarrow as pa
import pytest

from armdata.pipeline.sinks import storage
from armdata.pipeline.sinks.finalize import build_counts, counts_consistent
from armdata.pipeline.sinks.writer import SHARD_BYTES, auto_num_shards, full_table, rejection_lines, \
    shard_of, shard_path
from armdata.schemas.episode import Episode, Rejection, Step, encode_jpeg
from armdata.schemas.output import SCHEMA, episode_table


def test_shard_of_is_a_stable_hash():
    eid = "bridge_dataset/bridge_dataset-train.tfrecord-00000-of-00001__7"
    expected = int.from_bytes(hashlib.sha256(eid.encode()).digest()[:8], "big") % 16
    assert shard_of(eid, 16) == expected
    counts = collections.Counter(shard_of(f"ds/ep__{i}", 8) for i in range(8000))
    assert set(counts) == set(range(8)) and min(counts.values()) > 800


def test_shard_path_and_count():
    assert shard_path(3, 12) == "data/train-00003-of-00012.parquet"
    assert auto_num_shards(0, 0, 1) == 1
    assert auto_num_shards(10 * SHARD_BYTES + 1, 1000, 1) == 11
    assert auto_num_shards(10, 1000, 32) == 32          # at least --min-shards
    assert auto_num_shards(10 * SHARD_BYTES, 3, 32) == 3  # never more shards than episodes


def episode(n: int = 3) -> Episode:
    frame = encode_jpeg(np.zeros((8, 8, 3), np.uint8))
    steps = [Step(index=i + 1, image=frame, action=np.full(7, i / 10, np.float32),
                  state=np.zeros(2, np.float32), instruction="go", image_width=8,
                  image_height=8) for i in range(n)]
    return Episode("ds", "ds/ep__0", n + 1, steps, {"file": "x"})


def test_full_table_has_the_schema_and_action_columns():
    stats = {"q01": [0.0] * 7, "q99": [0.1] * 7, "mask": [True] * 6 + [False]}
    ep = episode()
    table = full_table(episode_table(ep), ep.actions(), stats)
    assert table.schema == SCHEMA
    rows = table.to_pylist()
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[0]["action_normalized"][0] == -1.0 and rows[2]["action_bins"][0] == 256
    assert rows[0]["action_chunk_bins"][7] == rows[2]["action_bins"]
    assert json.loads(rows[0]["episode_metadata"]) == {"file": "x"}
    assert rows[0]["depth_codes"] is None and rows[0]["trace"] is None


def test_rejections_are_ordered_and_counted():
    recs = [Rejection("ds", "b", None, "validate", "no usable steps left", 0),
            Rejection("ds", "b", 2, "validate", "bad", 1),
            Rejection("ds", "a", 5, "depth", "bad", 1)]
    lines = [json.loads(x) for x in rejection_lines(recs).splitlines()]
    assert [(r["episode_id"], r["step"]) for r in lines] == [("a", 5), ("b", None), ("b", 2)]
    counts = build_counts({"episodes_in": 3, "steps_source": 10, "steps_dropped_by_config": 2},
                          [{"episodes": 2, "rows": 6}], recs)
    assert counts["steps_in"] == 8 and counts["steps_rejected"] == 2
    assert counts["episodes_rejected"] == 1 and counts_consistent(counts)
    counts["steps_out"] -= 1
    assert not counts_consistent(counts)


def test_image_columns_are_hub_image_features():
    """Schema v2: image columns are {bytes, path} structs declared as Image in the `huggingface`
    metadata the Parquet writer stores; `image_bytes` reads v2 structs and v1 plain bytes."""
    from armdata.schemas.output import IMAGE, IMAGE_COLUMNS, SCHEMA_VERSION, image_bytes, image_cell

    assert SCHEMA_VERSION == 2
    features = json.loads(SCHEMA.metadata[b"huggingface"])["info"]["features"]
    assert features == {c: {"_type": "Image"} for c in IMAGE_COLUMNS}
    assert all(SCHEMA.field(c).type == IMAGE for c in IMAGE_COLUMNS)
    jpeg = encode_jpeg(np.zeros((4, 4, 3), np.uint8))
    assert image_bytes(image_cell(jpeg)) == jpeg and image_bytes(jpeg) == jpeg
    assert image_cell(None) is None and image_bytes(None) is None
    with pytest.raises(TypeError):
        image_bytes([1, 2])


def test_hashing_writer_hashes_what_it_wrote_even_from_a_reused_buffer(tmp_path):
    """The sha256 (taken on another thread) is that of the file's bytes, also when the caller
    overwrites its buffer right after each write, and for read-only buffers kept as they are."""
    path = tmp_path / "x.bin"
    out = storage.HashingWriter(open(path, "wb"))
    buffer = bytearray(100_000)
    for i in range(50):
        buffer[:] = bytes([i % 251]) * len(buffer)
        out.write(buffer)
        out.write(memoryview(bytes([i]) * 3))
    out.write(pa.py_buffer(b"arrow buffer"))
    out.close()
    data = path.read_bytes()
    assert out.size == len(data) == 50 * 100_003 + 12
    assert out.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
