"""Safety of `armdata build` (issue 7): never delete what is not ours, never publish an empty or
wrong dataset with exit 0, one build per output at a time, typos and bad files refused before any
Beam work, code bugs fail the job instead of becoming rejections, and a dataset says how it was
made."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from pipeline import storage
from pipeline.synthetic import write_synthetic_rlds
from tests.conftest import REPO, armdata, build, rejected
from tests.tiny_models import make_tiny_vqvae

FAULTS = {1: "corrupt_jpeg", 2: "nan_action", 3: "empty", 4: "missing_instruction"}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return write_synthetic_rlds(tmp_path_factory.mktemp("src"), num_episodes=6, num_steps=4,
                                image_size=(32, 32), seed=11, faults=FAULTS, name="safety_demo")


@pytest.fixture(scope="module")
def vqvae(tmp_path_factory) -> Path:
    return make_tiny_vqvae(tmp_path_factory.mktemp("vq") / "vqvae.pt")


def small_build(source: Path, output: Path, *extra: str) -> int:
    return build("--config", "armdata_demo", "--source", source, "--output", output,
                 "--max-episodes", "2", *extra)


def config_with(tmp_path: Path, old: str, new: str) -> Path:
    text = (REPO / "configs" / "armdata_demo.yaml").read_text()
    assert old in text
    path = tmp_path / "config.yaml"
    path.write_text(text.replace(old, new))
    return path


# --- never delete what is not ours ---------------------------------------------------------------

def test_overwrite_refuses_a_folder_that_is_not_an_armdata_output(source, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(source, out / "dataset")
    (out / "notes.txt").write_text("mine")
    assert small_build(source, out, "--overwrite") == 2
    assert "not an armdata output" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "dataset" / "dataset_info.json").exists()


def test_source_inside_output_is_refused(source, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(source, root / "src")
    (root / "manifest.json").write_text("{}")   # even if it looks like an armdata output
    assert small_build(root / "src", root, "--overwrite") == 2
    assert "is inside the output" in capsys.readouterr().err
    assert (root / "src" / "dataset_info.json").exists()


def test_old_output_survives_a_failed_publish(source, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert small_build(source, out) == 0
    before = (out / "manifest.json").read_bytes()
    real_replace = os.replace

    def crash_on_publish(src, dst, *args, **kwargs):
        if storage.STAGING_MARK in str(src) and Path(dst) == out:
            raise OSError("killed while publishing")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", crash_on_publish)
    with pytest.raises(OSError, match="killed while publishing"):
        small_build(source, out, "--overwrite")
    assert (out / "manifest.json").read_bytes() == before
    # nothing left beside it but the finished episodes, kept for a rerun (see Resume)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("out.armdata-work-")] \
        == ["out"]


def test_overwrite_replaces_an_armdata_output(source, tmp_path, capsys):
    out = tmp_path / "out"
    assert small_build(source, out) == 0
    assert "published" in capsys.readouterr().out
    (out / "data" / "stale.parquet").write_bytes(b"old")
    assert small_build(source, out, "--overwrite") == 0
    assert not (out / "data" / "stale.parquet").exists() and (out / "manifest.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --- one build per output ------------------------------------------------------------------------

def test_second_build_to_the_same_output_fails(source, tmp_path, capsys):
    out = tmp_path / "out"
    with storage.output_lock(str(out)):
        assert small_build(source, out) == 2
    assert "another build is writing" in capsys.readouterr().err
    assert not out.exists()
    assert small_build(source, out) == 0          # the lock is released with its holder
    assert not Path(str(out) + storage.LOCK_SUFFIX).exists()


def test_lock_left_by_a_dead_build_does_not_block(source, tmp_path):
    out = tmp_path / "out"
    Path(str(out) + storage.LOCK_SUFFIX).write_text("pid 1 on elsewhere")   # holder gone
    assert small_build(source, out) == 0


# --- never publish an empty or wrong dataset with exit 0 -----------------------------------------

def test_config_key_typo_fails_before_beam(source, tmp_path, capsys):
    config = config_with(tmp_path, "image_key: observation/image", "image_key: observation/img")
    assert build("--config", config, "--source", source, "--output", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "image_key 'observation/img'" in err and "observation/image" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_empty_split_fails(source, tmp_path, capsys):
    assert build("--config", "armdata_demo", "--source", source, "--output", tmp_path / "o",
                 "--split", "train[:0]") == 2
    assert "selects no episode" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_too_many_rejections_fail_and_publish_nothing(source, tmp_path, capsys):
    out = tmp_path / "out"
    assert build("--config", "armdata_demo", "--source", source, "--output", out,
                 "--max-reject-fraction", "0.2") == 1
    err = capsys.readouterr().err
    failed = Path(str(out) + ".armdata-failed")
    assert "--max-reject-fraction 0.2" in err and str(failed / "rejected.jsonl") in err
    assert not out.exists()
    records = [json.loads(line) for line in (failed / "rejected.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in records} >= {"validate", "standardize"}
    report = json.loads((failed / "report.json").read_text())
    assert report["counts"]["episodes_rejected"] == 2
    # the default threshold (0.5) accepts this input; success clears the failed report
    assert build("--config", "armdata_demo", "--source", source, "--output", out) == 0
    assert (out / "manifest.json").exists() and not failed.exists()
    assert len(rejected(out)) == len(records)


def test_no_row_written_fails(source, tmp_path, capsys):
    config = config_with(tmp_path, "standardize: identity",
                         "standardize: generic\noptions:\n  action_keys: [action, reward]\n"
                         "  gripper: open_is_one")
    out = tmp_path / "out"
    assert build("--config", config, "--source", source, "--output", out,
                 "--max-reject-fraction", "1") == 1
    err = capsys.readouterr().err
    assert "no row was written" in err and "8 dims" in err
    assert not out.exists()


def test_inspect_fails_on_an_empty_dataset(tmp_path, capsys):
    out = tmp_path / "empty"
    (out / "rejected").mkdir(parents=True)
    counts = {k: 0 for k in ("episodes_in", "episodes_out", "episodes_rejected", "steps_in",
                             "steps_out", "steps_rejected")}
    (out / "manifest.json").write_text(json.dumps({
        "config": {"name": "armdata_demo"}, "counts": counts, "num_shards": 0, "shards": [],
        "rejected": {"path": "rejected/rejected.jsonl", "by_stage": {}}}))
    (out / "dataset_statistics.json").write_text("{}")
    assert armdata("inspect", out) == 1
    assert "EMPTY" in capsys.readouterr().out


# --- typos and bad files are refused before any Beam work ----------------------------------------

def test_unknown_option_is_refused_with_a_suggestion(source, tmp_path, capsys):
    assert small_build(source, tmp_path / "o", "--max-epsiodes", "3") == 2
    err = capsys.readouterr().err
    assert "--max-epsiodes" in err and "did you mean --max-episodes?" in err
    assert not (tmp_path / "o").exists()
    assert armdata("inspect", tmp_path, "--rowz", "2") == 2
    assert "did you mean --rows?" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["missing", "garbage", "pickle"])
def test_bad_vqvae_fails_before_beam(source, tmp_path, capsys, kind):
    path = tmp_path / "vqvae.pt"
    if kind == "garbage":
        path.write_bytes(b"not a checkpoint")
    elif kind == "pickle":
        torch.save({"weights": {}, "args": argparse_namespace()}, path)
    assert small_build(source, tmp_path / "o", "--stages", "actions,depth", "--depth-source",
                       "sensor", "--vqvae", path) == 2
    err = capsys.readouterr().err
    assert str(path) in err and len(err.strip().splitlines()) == 1
    assert {"missing": "does not exist", "garbage": "not a torch checkpoint",
            "pickle": "weights-only loading refuses"}[kind] in err


def argparse_namespace():
    import argparse

    return argparse.Namespace(lr=1e-3)


def test_bad_depth_model_and_manual_points_fail_before_beam(source, vqvae, tmp_path, capsys):
    assert small_build(source, tmp_path / "o", "--stages", "actions,depth", "--vqvae", vqvae,
                       "--depth-model", tmp_path / "no_model") == 2
    assert "no_model is not a model directory" in capsys.readouterr().err
    points = tmp_path / "points.json"
    points.write_text("[1, 2]")
    for path, message in ((tmp_path / "none.json", "does not exist"),
                          (points, "cannot read manual points")):
        assert small_build(source, tmp_path / "o", "--stages", "actions,trace", "--localizer",
                           "manual", "--manual-points", path) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_malformed_arms_is_a_config_error(source, tmp_path, capsys):
    config = config_with(tmp_path, "xyz_indices: [0, 1, 2]", "xyz_indices: 5")
    assert build("--config", config, "--source", source, "--output", tmp_path / "o") == 2
    assert "arms[0].xyz_indices must be 3 non-negative ints" in capsys.readouterr().err


# --- a dataset says how it was made --------------------------------------------------------------

def test_manifest_and_card_record_stage_options(source, vqvae, tmp_path):
    from models.provenance import file_sha256

    out = tmp_path / "out"
    assert small_build(source, out, "--stages", "actions,depth,trace", "--depth-source",
                       "sensor", "--vqvae", vqvae, "--localizer", "projection") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    options = manifest["stage_options"]
    assert options["depth"] == {"source": "sensor", "store_depth": False,
                                "vqvae": {"path": str(vqvae), "sha256": file_sha256(vqvae)}}
    assert options["trace"] == {"localizer": "projection", "tracker": "affine",
                                "state_guide": True}
    card = (out / "README.md").read_text()
    assert file_sha256(vqvae) in card and '"localizer": "projection"' in card


# --- the demo keeps what it made -----------------------------------------------------------------

def test_demo_keeps_its_output_and_writes_previews(vqvae, tmp_path, capsys):
    from tests.conftest import LOCAL_BEAM

    work = tmp_path / "demo"
    args = ["demo", "--workdir", work, "--episodes", "2", "--steps", "4", "--size", "48",
            "--vqvae", vqvae, *LOCAL_BEAM]
    assert armdata(*args) == 0
    out = capsys.readouterr().out
    assert f"everything is in {work}" in out
    assert (work / "output" / "manifest.json").exists() and (work / "source").is_dir()
    previews = sorted((work / "preview").glob("step_*.png"))
    assert 1 <= len(previews) <= 4
    assert armdata(*args) == 0                     # a rerun replaces its own folder
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("keep")
    assert armdata("demo", "--workdir", other, "--vqvae", vqvae) == 2
    assert "not an armdata demo folder" in capsys.readouterr().err
    assert (other / "thesis.tex").read_text() == "keep"


# --- issue 17: resume identity, shard lengths, work-file integrity -------------------------------

def test_resume_after_the_source_changed_at_the_same_path_uses_only_the_new_source(tmp_path,
                                                                                   caplog):
    """A build killed after spilling every episode, its source rewritten at the same path (same
    episode count and ids, other content), then rerun: old code published the old episodes."""
    import logging
    import signal

    from tests.conftest import build_killed_while_writing, read_rows

    root = tmp_path / "src"
    old = write_synthetic_rlds(root, num_episodes=4, num_steps=3, image_size=(32, 32), seed=1,
                               name="resume_src")
    out = tmp_path / "out"
    assert build_killed_while_writing("--config", "armdata_demo", "--source", old,
                                      "--output", out) == 128 + signal.SIGTERM
    assert not out.exists() and list(tmp_path.glob("out.armdata-work-*/episodes/*/*.json"))

    shutil.rmtree(root)
    new = write_synthetic_rlds(root, num_episodes=4, num_steps=3, image_size=(32, 32), seed=2,
                               name="resume_src")
    assert new == old
    with caplog.at_level(logging.WARNING, logger="pipeline.resume"):
        assert build("--config", "armdata_demo", "--source", new, "--output", out) == 0
    clean = tmp_path / "clean"
    assert build("--config", "armdata_demo", "--source", new, "--output", clean) == 0
    assert read_rows(out) == read_rows(clean)          # not the old source's spilled episodes
    assert "made from another source (same path, other content)" in caplog.text
    assert json.loads((out / "manifest.json").read_text())["episodes_reused"] == 0


def test_xyz_indices_outside_the_state_fail_before_beam(source, tmp_path, capsys, monkeypatch):
    """The demo's state has 7 values per step: an arm at [5, 6, 7] would give only null traces."""
    from pipeline import build as build_module

    config = config_with(tmp_path, "xyz_indices: [0, 1, 2]", "xyz_indices: [5, 6, 7]")
    monkeypatch.setattr(build_module, "build_graph", lambda *a, **k: pytest.fail("Beam ran"))
    assert build("--config", config, "--source", source, "--output", tmp_path / "o",
                 "--stages", "actions,trace") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "arms[0].xyz_indices [5, 6, 7] are outside state_key 'observation/state'" in err
    assert "7 values per step" in err and not (tmp_path / "o").exists()
