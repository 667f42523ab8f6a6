"""Bad input never disappears: every unusable episode/step is in rejected/ with a reason, the
job completes, `in = out + rejected`; wrong arguments fail before any Beam work; a crashed build
publishes nothing."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from armdata.testing.synthetic import write_synthetic_rlds
from tests.conftest import REPO, armdata, build, read_rows, rejected

FAULTS = {1: "corrupt_jpeg", 2: "nan_action", 3: "inf_state", 4: "missing_instruction",
          5: "empty", 6: "short"}
STEPS = 6


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    root = tmp_path_factory.mktemp("faulty")
    return write_synthetic_rlds(root, num_episodes=8, num_steps=STEPS, image_size=(32, 32),
                                seed=3, faults=FAULTS, name="faulty_demo")


@pytest.fixture(scope="module")
def index_of(faulty) -> dict[str, int]:
    """episode_id → the writer's episode index (tfds orders examples by a hash of their key)."""
    import tensorflow_datasets as tfds

    ds = tfds.builder_from_directory(str(faulty)).as_dataset(
        split="train", read_config=tfds.ReadConfig(add_tfds_id=True))
    return {"armdata_demo/" + ep["tfds_id"].decode(): int(ep["episode_metadata"]["episode_id"])
            for ep in tfds.as_numpy(ds)}


@pytest.fixture(scope="module")
def faulty_build(faulty, tmp_path_factory):
    out = tmp_path_factory.mktemp("faulty_out") / "out"
    assert build("--config", "armdata_demo", "--source", faulty, "--output", out) == 0
    return out


def by_episode(records: list[dict], index_of: dict[str, int]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for r in records:
        out.setdefault(index_of[r["episode_id"]], []).append(r)
    return out


def test_every_fault_is_rejected_with_reason(faulty_build, index_of):
    manifest = json.loads((faulty_build / "manifest.json").read_text())
    c = manifest["counts"]
    assert c["episodes_in"] == 8
    assert c["episodes_in"] == c["episodes_out"] + c["episodes_rejected"]
    assert c["steps_in"] == c["steps_out"] + c["steps_rejected"]
    rec = by_episode(rejected(faulty_build), index_of)
    assert set(rec) == {1, 2, 3, 4, 5}
    (r,) = rec[1]
    assert r["stage"] == "validate" and r["step"] == STEPS // 2 and "decode" in r["reason"]
    (r,) = rec[2]
    assert r["step"] == STEPS // 2 and "action is not finite" in r["reason"]
    (r,) = rec[3]
    assert r["step"] == STEPS // 2 and "state is not finite" in r["reason"]
    steps = [r for r in rec[4] if r["step"] is not None]
    assert len(steps) == STEPS and all("instruction" in r["reason"] for r in steps)
    assert [r["reason"] for r in rec[4] if r["step"] is None] == ["no usable steps left"]
    (r,) = rec[5]
    assert r["step"] is None and "no steps" in r["reason"]
    assert c["episodes_rejected"] == 2          # missing instruction everywhere, and empty
    assert c["steps_rejected"] == 3 + STEPS
    rows = read_rows(faulty_build)
    kept = {(index_of[r["episode_id"]], r["step"]) for r in rows}
    assert (1, STEPS // 2) not in kept and (1, STEPS // 2 + 1) in kept   # gap left, rest kept
    assert sum(1 for e, _ in kept if e == 6) == 1                        # the 1-step episode
    assert all(np.isfinite(r["action"]).all() and np.isfinite(r["state"]).all() for r in rows)


def test_wrong_action_shape_is_rejected(faulty, tmp_path, capsys):
    config = tmp_path / "shape.yaml"
    text = (REPO / "configs" / "armdata_demo.yaml").read_text()
    config.write_text(text.replace(
        "standardize: identity", "standardize: generic\noptions:\n  action_keys: [action, reward]"
        "\n  gripper: open_is_one"))
    out = tmp_path / "out"
    assert build("--config", config, "--source", faulty, "--output", out) == 1   # no row left
    assert "8 dims" in capsys.readouterr().err and not out.exists()
    failed = tmp_path / "out.armdata-failed" / "rejected.jsonl"
    reasons = [json.loads(line)["reason"] for line in failed.read_text().splitlines()]
    assert any("8 dims" in reason for reason in reasons)


@pytest.mark.parametrize("change, message", [
    ({"--source": "/nonexistent/ds/1.0.0"}, "not a TFDS dataset"),
    ({"--config": "no_such_dataset"}, "unknown config"),
    ({"--split": "validation"}, "bad split"),
    ({"--stages": "actions,colour"}, "unknown stage"),
])
def test_bad_arguments_fail_fast(faulty, tmp_path, capsys, change, message):
    args = {"--config": "armdata_demo", "--source": str(faulty), "--output": str(tmp_path / "o")}
    args.update(change)
    assert build(*[x for kv in args.items() for x in kv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_nonempty_output_needs_overwrite(faulty, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    assert build("--config", "armdata_demo", "--source", faulty, "--output", out,
                 "--max-episodes", "2") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "precious.txt").exists()
    assert build("--config", "armdata_demo", "--source", faulty, "--output", out,
                 "--max-episodes", "2", "--overwrite") == 2      # not an armdata output
    assert "not an armdata output" in capsys.readouterr().err
    assert (out / "precious.txt").exists()


def test_crash_publishes_nothing(faulty, tmp_path, monkeypatch):
    from armdata.pipeline.sinks import writer

    def explode(self, element, num_shards, stats):
        raise OSError("disk full")

    monkeypatch.setattr(writer.WriteShard, "process", explode)
    out = tmp_path / "out"
    with pytest.raises(Exception, match="disk full"):
        build("--config", "armdata_demo", "--source", faulty, "--output", out)
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if ".armdata-staging-" in p]


def test_inspect_reports_round_trip(faulty_build, capsys):
    assert armdata("inspect", faulty_build, "--verify", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["consistent"] and report["round_trip_mismatches"] == 0
    assert report["rows_checked"] == report["counts"]["steps_out"] > 0
    assert report["files_bad"] == [] and report["files_listed"] > report["num_shards"]
