"""Reading RLDS records without TensorFlow (`armdata.pipeline.sources.tfrecord`, `armdata.pipeline.sources.rlds_features`): the
same arrays as tfds' own parser on real Bridge data and on generated data, unused frames left
undecoded, TensorFlow's parser for feature kinds the fast path does not cover, and damaged files
failing at the damaged record."""
from __future__ import annotations

import io
import struct
import threading

import numpy as np
import pytest

from armdata.pipeline.sources.rlds_features import example_fields, make_decoder, tensorflow_decoder, \
    without_unused_frames
from armdata.pipeline.sources.rlds import open_builder
from armdata.testing.synthetic import write_synthetic_rlds
from armdata.pipeline.sources.tfrecord import FLOAT, INT64, RecordError, parse_example, read_ahead, \
    read_records

FAULTS = {1: "corrupt_jpeg", 2: "nan_action", 3: "missing_instruction", 4: "empty", 5: "short"}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic_rlds(tmp_path_factory.mktemp("rlds"), num_episodes=6, num_steps=4,
                                image_size=(24, 32), seed=3, faults=FAULTS, num_shards=2)


def records(directory, limit: int | None = None) -> list[bytes]:
    builder = open_builder(str(directory))
    out = []
    for fi in builder.info.splits["train"].file_instructions:
        with open(fi.filename, "rb") as f:
            out += list(read_records(f))
    return out[:limit]


def assert_same(ours, theirs, path="") -> None:
    assert type(ours) is type(theirs), (path, type(ours), type(theirs))
    if isinstance(ours, dict):
        assert sorted(ours) == sorted(theirs), path
        for key in ours:
            assert_same(ours[key], theirs[key], f"{path}/{key}")
    elif isinstance(ours, np.ndarray):
        assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), path
        assert np.array_equal(ours, theirs, equal_nan=ours.dtype.kind == "f"), path
    else:
        assert ours == theirs, path


def check_against_tensorflow(directory, keep=None, limit=None) -> list[dict]:
    features = open_builder(str(directory)).info.features
    if keep is not None:
        features = without_unused_frames(features, frozenset(keep))
    assert not isinstance(example_fields(features), str)    # the TensorFlow-free path
    ours, theirs = make_decoder(features), tensorflow_decoder(features)
    decoded = []
    for record in records(directory, limit):
        episode = ours(record)
        assert_same(episode, theirs(record))
        decoded.append(episode)
    return decoded


def test_same_as_tensorflow_on_generated_data(synthetic):
    episodes = check_against_tensorflow(synthetic)
    assert len(episodes) == 6 and any(len(e["steps"]["action"]) == 0 for e in episodes)


def test_same_as_tensorflow_on_bridge(bridge_dir):
    episodes = check_against_tensorflow(bridge_dir, limit=6)
    assert isinstance(episodes[0]["episode_metadata"]["file_path"], bytes)
    assert episodes[0]["steps"]["observation"]["image_0"].dtype == object


def test_unused_frames_are_not_decoded(synthetic):
    keep = {"observation/image", "observation/state", "action", "language_instruction"}
    (episode, *_) = check_against_tensorflow(synthetic, keep)
    assert sorted(episode["steps"]["observation"]) == ["image", "state"]   # no wrist, no depth
    assert {"is_first", "reward", "discount"} <= set(episode["steps"])     # small fields stay
    (episode, *_) = check_against_tensorflow(synthetic, keep | {"observation/depth"})
    depth = episode["steps"]["observation"]["depth"]
    assert depth.shape == (len(episode["steps"]["action"]), 24, 32)


def test_feature_kinds_without_a_fast_path_use_tensorflow(tmp_path):
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import example_serializer

    features = tfds.features.FeaturesDict({
        "steps": tfds.features.Dataset({
            "action": tfds.features.Tensor(shape=(2,), dtype=np.float32),
            "points": tfds.features.Tensor(shape=(3,), dtype=np.float32, encoding="zlib")}),
        "episode_metadata": {"id": tfds.features.Scalar(dtype=np.int64)}})
    assert "encoded" in example_fields(features)
    value = {"steps": [{"action": [1, 2], "points": np.full(3, k, np.float32)} for k in (1, 3)],
             "episode_metadata": {"id": 7}}
    serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
    record = serializer.serialize_example(features.encode_example(value))
    episode = make_decoder(features)(record)
    assert episode["episode_metadata"]["id"] == 7
    assert episode["steps"]["action"].tolist() == [[1, 2], [1, 2]]
    assert len(episode["steps"]["points"]) == 2   # left as stored, as SkipDecoding leaves steps


# --- TFRecord framing ----------------------------------------------------------------------------

@pytest.fixture
def tfrecord(tmp_path):
    import tensorflow as tf

    path = tmp_path / "x.tfrecord"
    payloads = [bytes([i]) * (50 + 10 * i) for i in range(5)]
    with tf.io.TFRecordWriter(str(path)) as w:
        for p in payloads:
            w.write(p)
    return path, payloads


def offsets(payloads) -> list[int]:
    return list(np.cumsum([0] + [16 + len(p) for p in payloads])[:-1])


def test_records_skip_and_take(tfrecord):
    path, payloads = tfrecord
    with open(path, "rb") as f:
        assert list(read_records(f)) == payloads
    with open(path, "rb") as f:
        assert list(read_records(f, 1, 2)) == payloads[1:3]


def test_skipping_seeks_and_leaves_damage_to_the_reader_of_it(tfrecord):
    """A slice seeks over the records before it: a later slice's read does not depend on them,
    and a cut inside them ends that slice early (the slice that reads them reports the cut)."""
    path, payloads = tfrecord
    data, starts = path.read_bytes(), offsets(payloads)
    path.write_bytes(data[:starts[1] + 20])        # cut inside record 1
    with open(path, "rb") as f:
        assert list(read_records(f, 3, 2)) == []    # seeks past the end: nothing, no error
    with open(path, "rb") as f, pytest.raises(RecordError, match=f"truncated record at "
                                                                 f"{starts[1]}"):
        list(read_records(f, 1, 2))
    with io.BytesIO(data) as f:
        assert list(read_records(f, 4, 1)) == payloads[4:]


def test_truncation_anywhere_fails_at_its_record(tfrecord):
    path, payloads = tfrecord
    data, starts = path.read_bytes(), offsets(payloads)
    for cut in range(1, len(data)):
        if cut in starts:   # a cut between records is a shorter, valid file
            continue
        path.write_bytes(data[:cut])
        record = max(i for i, s in enumerate(starts) if s < cut)
        with open(path, "rb") as f, pytest.raises(RecordError,
                                                   match=f"truncated record at {starts[record]}"):
            list(read_records(f))


@pytest.mark.parametrize("where", [3, 10, 20])   # in the length, its checksum, the data
def test_corruption_fails_at_its_record(tfrecord, where):
    path, payloads = tfrecord
    data = bytearray(path.read_bytes())
    start = offsets(payloads)[2]
    data[start + where] ^= 0x40
    path.write_bytes(bytes(data))
    with open(path, "rb") as f:
        got = []
        with pytest.raises(RecordError, match=f"(corrupted|truncated) record at {start}"):
            for record in read_records(f):
                got.append(record)
    assert got == payloads[:2]


def test_read_ahead_yields_in_order_then_raises_where_the_reader_failed(tfrecord):
    path, payloads = tfrecord
    data = bytearray(path.read_bytes())
    start = offsets(payloads)[3]
    with open(path, "rb") as f:
        assert list(read_ahead(read_records(f))) == payloads
    data[start + 20] ^= 0x40
    path.write_bytes(bytes(data))
    got = []
    with open(path, "rb") as f, pytest.raises(RecordError, match=f"corrupted record at {start}"):
        for record in read_ahead(read_records(f)):
            got.append(record)
    assert got == payloads[:3]


def test_read_ahead_stops_its_thread_when_closed_early():
    """A consumer that stops (a break, an error) leaves no thread reading behind it, and the
    producer ran at most `depth` + 1 items ahead."""
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    ahead = read_ahead(items(), depth=2)
    assert [next(ahead), next(ahead)] == [0, 1]
    ahead.close()
    assert not [t for t in threading.enumerate() if t.name == "read-ahead"]
    assert len(produced) <= 2 + 2 + 1


# --- Example wire format -------------------------------------------------------------------------

def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def field(number: int, wire: int, payload: bytes) -> bytes:
    tag = varint(number << 3 | wire)
    return tag + (varint(len(payload)) + payload if wire == 2 else payload)


def example(entries: dict[str, bytes]) -> bytes:
    feature_map = b"".join(field(1, 2, field(1, 2, k.encode()) + field(2, 2, v))
                           for k, v in entries.items())
    return field(1, 2, feature_map)


def test_unpacked_and_packed_encodings_parse_alike():
    import tensorflow as tf

    values = [0, 1, -1, 300, 2**40, -(2**62)]
    floats = [0.5, -2.25, 2.0**100]
    unpacked_ints = b"".join(field(1, 0, varint(v)) for v in values)
    unpacked_floats = b"".join(field(1, 5, struct.pack("<f", x)) for x in floats)
    record = example({"i": field(3, 2, unpacked_ints), "f": field(2, 2, unpacked_floats),
                      "skipped": field(1, 2, field(1, 2, b"x" * 100))})
    parsed = parse_example(record, {"i", "f"})
    assert parsed["i"][0] == INT64 and parsed["i"][1].tolist() == values
    assert parsed["f"][0] == FLOAT and parsed["f"][1].tolist() == floats
    packed = tf.train.Example(features=tf.train.Features(feature={
        "i": tf.train.Feature(int64_list=tf.train.Int64List(value=values)),
        "f": tf.train.Feature(float_list=tf.train.FloatList(value=floats)),
        "b": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"", b"\xff\x00"]))}))
    parsed = parse_example(packed.SerializeToString(), {"i", "f", "b"})
    assert parsed["i"][1].tolist() == values and parsed["f"][1].tolist() == floats
    assert parsed["b"][1] == [b"", b"\xff\x00"]


@pytest.mark.parametrize("damage", ["cut", "length", "wire", "float_as_varint"])
def test_malformed_example_is_a_record_error(damage):
    record = example({"a": field(2, 2, struct.pack("<3f", 1, 2, 3))})
    bad = {"cut": record[:-3], "length": record[:1] + b"\x7f" + record[2:],
           "wire": record + b"\x0f",
           "float_as_varint": example({"a": field(2, 2, field(1, 0, varint(7)))})}[damage]
    with pytest.raises(RecordError, match="malformed Example"):
        parse_example(bad, {"a"})


def test_empty_and_mistyped_features():
    from armdata.pipeline.sources.rlds_features import Field, decode_fields

    fields = [Field(("steps", "action"), FLOAT, np.dtype(np.float32), (2,), True),
              Field(("steps", "is_first"), INT64, np.dtype(bool), (), True),
              Field(("episode_metadata", "id"), INT64, np.dtype(np.int32), (), False)]
    keys = frozenset(f.key for f in fields)
    ints = field(3, 2, field(1, 2, varint(1) + varint(0)))
    record = example({"steps/action": b"", "steps/is_first": ints,     # a Feature with no list
                      "episode_metadata/id": field(3, 2, field(1, 2, varint(5)))})
    episode = decode_fields(record, fields, keys)
    assert episode["steps"]["action"].shape == (0, 2)
    assert episode["steps"]["is_first"].tolist() == [True, False]
    assert episode["episode_metadata"]["id"] == np.int32(5)
    floats = field(2, 2, field(1, 2, struct.pack("<2f", 1, 2)))
    with pytest.raises(RecordError, match="holds a float_list, expected int64_list"):
        decode_fields(example({"steps/is_first": floats}), fields, keys)
    with pytest.raises(RecordError, match="episode_metadata/id is missing"):
        decode_fields(example({}), fields, keys)
