"""Damaged source data: a truncated or CRC-corrupted TFRecord shard, a missing shard file and a bad
dataset_info.json. The episodes before the damage are built, the damage is one dead letter per
shard, the counts add up, and only --strict turns damage into a failing exit status."""
from __future__ import annotations

import json
import re
import shutil
import struct

import pytest

from armdata.testing.synthetic import write_synthetic_rlds
from tests.conftest import build, read_rows, rejected

EPISODES, SHARDS = 9, 3


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    return write_synthetic_rlds(root, num_episodes=EPISODES, num_steps=3, image_size=(32, 32),
                                seed=5, name="damaged_demo", num_shards=SHARDS)


@pytest.fixture
def source(pristine, tmp_path):
    """A private copy of the dataset to damage."""
    copy = tmp_path / "src" / "damaged_demo" / "1.0.0"
    shutil.copytree(pristine, copy)
    return copy


def shard(source, index: int):
    return source / f"damaged_demo-train.tfrecord-{index:05d}-of-{SHARDS:05d}"


def shard_sizes(source) -> list[int]:
    info = json.loads((source / "dataset_info.json").read_text())
    (split,) = info["splits"]
    return [int(n) for n in split["shardLengths"]]


def record_offsets(path) -> list[int]:
    """Byte offset of every record in a TFRecord file (8-byte length, 4-byte CRC, data, 4-byte
    CRC)."""
    data, offsets, pos = path.read_bytes(), [], 0
    while pos < len(data):
        offsets.append(pos)
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        pos += 16 + length
    return offsets


def check_counts(out) -> dict:
    c = json.loads((out / "manifest.json").read_text())["counts"]
    assert c["episodes_in"] == c["episodes_out"] + c["episodes_rejected"] == EPISODES
    assert c["steps_in"] == c["steps_out"] + c["steps_rejected"]
    return c


def dead_letters(out) -> list[dict]:
    return [r for r in rejected(out) if r["stage"] == "read"]


def built_ids(out) -> set[str]:
    return {r["episode_id"] for r in read_rows(out)}


def test_truncated_shard_keeps_episodes_before_damage(source, tmp_path):
    path = shard(source, 1)
    offsets = record_offsets(path)
    cut = offsets[2] + 30                         # inside the third record
    path.write_bytes(path.read_bytes()[:cut])
    out = tmp_path / "out"
    assert build("--config", "armdata_demo", "--source", source, "--output", out) == 0
    n = shard_sizes(source)[1]
    (letter,) = dead_letters(out)
    assert str(path) in letter["reason"] and f"at byte offset {offsets[2]}" in letter["reason"]
    assert "truncated record" in letter["reason"]
    assert f"holds {n} episodes, 2 of the {n} to read were read" in letter["reason"]
    assert letter["step"] is None and letter["steps"] == 0
    c = check_counts(out)
    assert c["episodes_unread"] == n - 2 and c["episodes_out"] == EPISODES - (n - 2)
    name = path.name
    ids = {i for i in built_ids(out) if name in i}
    assert ids == {f"armdata_demo/{name}__0", f"armdata_demo/{name}__1"}


def test_corrupted_record_is_a_dead_letter_and_strict_fails(source, tmp_path, capsys):
    path = shard(source, 0)
    offsets = record_offsets(path)
    data = bytearray(path.read_bytes())
    data[offsets[1] + 40] ^= 0xFF                 # inside the second record's data: CRC mismatch
    path.write_bytes(bytes(data))
    out = tmp_path / "out"
    assert build("--config", "armdata_demo", "--source", source, "--output", out,
                 "--strict") == 1
    assert "--strict" in capsys.readouterr().err
    (letter,) = dead_letters(out)          # published all the same, with the dead letter
    assert "corrupted record" in letter["reason"]
    offset = int(re.search(r"at byte offset (\d+)", letter["reason"]).group(1))
    assert offsets[1] <= offset < offsets[2]      # TF names the record's data, after its header
    ids = {i for i in built_ids(out) if path.name in i}
    assert f"armdata_demo/{path.name}__0" in ids and f"armdata_demo/{path.name}__1" not in ids
    assert check_counts(out)["episodes_unread"] == shard_sizes(source)[0] - len(ids)


def test_missing_shard_is_a_dead_letter_unless_strict(source, tmp_path, capsys):
    path = shard(source, 2)
    path.unlink()
    out = tmp_path / "out"
    assert build("--config", "armdata_demo", "--source", source, "--output", out) == 0
    (letter,) = dead_letters(out)
    n = shard_sizes(source)[2]
    assert str(path) in letter["reason"] and "NotFoundError" in letter["reason"]
    assert f"0 of the {n} to read were read" in letter["reason"]
    assert check_counts(out)["episodes_out"] == EPISODES - n
    capsys.readouterr()
    strict = tmp_path / "strict"
    assert build("--config", "armdata_demo", "--source", source, "--output", strict,
                 "--strict") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing" in err and str(path) in err
    assert not strict.exists()


@pytest.mark.parametrize("damage, message", [("delete", "not a TFDS dataset"),
                                             ("garbage", "is not valid JSON")])
def test_bad_dataset_info_is_one_line_exit_2(source, tmp_path, capsys, damage, message):
    info = source / "dataset_info.json"
    if damage == "delete":
        info.unlink()
    else:
        info.write_text('{"name": "damaged_demo", ')
    assert build("--config", "armdata_demo", "--source", source, "--output",
                 tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(source) in err
    assert not (tmp_path / "out").exists()


def set_shard_length(source, index: int, value) -> None:
    path = source / "dataset_info.json"
    info = json.loads(path.read_text())
    info["splits"][0]["shardLengths"][index] = value
    path.write_text(json.dumps(info))


@pytest.mark.parametrize("declared", ["0", "1"])
def test_shard_lengths_are_not_trusted_every_shard_is_read_to_its_end(source, tmp_path, declared):
    """dataset_info.json says shard 0 holds fewer episodes than it does (or none): every episode
    is read and published all the same, and the difference is counted."""
    actual = shard_sizes(source)[0]
    set_shard_length(source, 0, declared)
    out = tmp_path / "out"
    assert build("--config", "armdata_demo", "--source", source, "--output", out) == 0
    c = check_counts(out)                  # in = out + rejected, with in = what was read
    assert c["episodes_out"] == EPISODES and c["episodes_unread"] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counters"]["source/shard_length_mismatch"] == actual - int(declared)
    assert {f"armdata_demo/{shard(source, 0).name}__{i}" for i in range(actual)} <= built_ids(out)
    assert not dead_letters(out)


@pytest.mark.parametrize("value", ["-3", -3, "2.5", True])
def test_negative_or_non_integer_shard_length_is_one_line_exit_2(source, tmp_path, capsys,
                                                                 value):
    set_shard_length(source, 0, value)
    assert build("--config", "armdata_demo", "--source", source, "--output",
                 tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "shardLengths[0]" in err and str(source) in err
    assert not (tmp_path / "out").exists()
