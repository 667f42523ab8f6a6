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

from armdata.pipeline.sinks import storage
from armdata.wording import count
from armdata.testing.synthetic import write_synthetic_rlds
from tests.conftest import REPO, armdata, build, rejected

FAULTS = {1: "corrupt_jpeg", 2: "nan_action", 3: "empty", 4: "missing_instruction"}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return write_synthetic_rlds(tmp_path_factory.mktemp("src"), num_episodes=6, num_steps=4,
                                image_size=(32, 32), seed=11, faults=FAULTS, name="safety_demo")


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
    assert small_build(source, out, "--num-shards", "2") == 0
    assert "published" in capsys.readouterr().out
    old = {p.name for p in (out / "data").iterdir()}
    assert small_build(source, out, "--overwrite", "--num-shards", "1") == 0
    assert {p.name for p in (out / "data").iterdir()} == {"train-00000-of-00001.parquet"} != old
    assert (out / "manifest.json").exists()
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


def test_bad_depth_model_and_manual_points_fail_before_beam(source, tiny_vqvae, tmp_path, capsys):
    assert small_build(source, tmp_path / "o", "--stages", "actions,depth", "--vqvae", tiny_vqvae,
                       "--depth-model", tmp_path / "no_model") == 2
    assert "no_model: no such model directory" in capsys.readouterr().err
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

def test_manifest_and_card_record_stage_options(source, tiny_vqvae, tmp_path):
    from armdata.models.provenance import file_sha256

    out = tmp_path / "out"
    assert small_build(source, out, "--stages", "actions,depth,trace", "--depth-source",
                       "sensor", "--vqvae", tiny_vqvae, "--localizer", "projection") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    options = manifest["stage_options"]
    assert options["depth"] == {"source": "sensor", "store_depth": False, "vqvae": {
        "path": str(tiny_vqvae), "sha256": file_sha256(tiny_vqvae)}}
    assert options["trace"] == {"localizer": "projection", "tracker": "affine",
                                "state_guide": True}
    card = (out / "README.md").read_text()
    assert file_sha256(tiny_vqvae) in card and '"localizer": "projection"' in card


# --- issue 17, push/manifest checksums/inspect: every file the manifest lists has a sha256 that
# inspect --verify checks; a damaged shard is one line, not a traceback ---------------------------

@pytest.fixture(scope="module")
def published(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("listed") / "out"
    assert small_build(source, out) == 0
    return out


def test_manifest_lists_every_file_with_its_sha256(published):
    import hashlib

    manifest = json.loads((published / "manifest.json").read_text())
    on_disk = {str(p.relative_to(published)): p.read_bytes()
               for p in published.rglob("*") if p.is_file() and p.name != "manifest.json"}
    assert {f["path"] for f in manifest["files"]} == set(on_disk) >= {
        "README.md", "dataset_statistics.json", "rejected/rejected.jsonl"}
    for f in manifest["files"]:
        data = on_disk[f["path"]]
        assert f == {"path": f["path"], "bytes": len(data),
                     "sha256": hashlib.sha256(data).hexdigest()}


def test_inspect_verify_checks_every_listed_file(published, tmp_path, capsys):
    manifest = json.loads((published / "manifest.json").read_text())
    assert armdata("inspect", published, "--verify") == 0
    assert (f"verified: {count(len(manifest['files']), 'file')} "
            f"({count(manifest['num_shards'], 'shard')})"
            in capsys.readouterr().out)
    copy = tmp_path / "copy"
    shutil.copytree(published, copy)
    (copy / "rejected" / "rejected.jsonl").write_text("")
    assert armdata("inspect", copy, "--verify") == 1
    assert "rejected/rejected.jsonl does not match the sha256" in capsys.readouterr().out
    assert armdata("inspect", copy) == 0     # without --verify the files are not hashed


def test_inspect_on_a_truncated_shard_is_one_line(published, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(published, copy)
    shard = copy / json.loads((copy / "manifest.json").read_text())["shards"][0]["path"]
    shard.write_bytes(shard.read_bytes()[:len(shard.read_bytes()) // 2])
    assert armdata("inspect", copy, "--verify") == 1
    out = capsys.readouterr().out
    assert f"VERIFY FAILED: {shard.relative_to(copy)} does not match the sha256" in out
    assert armdata("inspect", copy) == 2
    err = capsys.readouterr().err
    assert "is not a readable shard" in err and len(err.strip().splitlines()) == 1, err

# --- issue 17, trainer and model loading: no code runs unless the user chose it -----------------

@pytest.fixture
def hub_calls(monkeypatch):
    """torch.hub.load recorded instead of run (no network, no CoTracker code here)."""
    calls = []

    def load(repo, model, **kwargs):
        calls.append((repo, model, kwargs))
        raise RuntimeError("no CoTracker in the tests")

    monkeypatch.setattr(torch.hub, "load", load)
    return calls


def test_cotracker_from_github_needs_trust_cotracker_code(hub_calls, tmp_path):
    from armdata.models.trackers import load_cotracker
    from armdata.schemas.config import CameraConfig
    from armdata.transforms.trace import TraceStage

    camera = CameraConfig("episode_metadata/k", "episode_metadata/t")
    for repo in (None, "someone/co-tracker"):
        with pytest.raises(ValueError, match="pass --trust-cotracker-code"):
            load_cotracker(repo, "offline")
    assert hub_calls == []                       # refused before torch.hub saw it
    with pytest.raises(ValueError, match="--trust-cotracker-code"):
        TraceStage(localizer="projection", tracker="cotracker3", camera=camera).options()
    trusted = TraceStage(localizer="projection", tracker="cotracker3", camera=camera,
                         trust_cotracker_code=True).options()
    assert trusted["cotracker"]["trust_code"] is True          # recorded in the manifest
    clone = tmp_path / "co-tracker"
    clone.mkdir()
    local = TraceStage(localizer="projection", tracker="cotracker3", camera=camera,
                       cotracker_repo=str(clone)).options()
    assert local["cotracker"] == {"repo": str(clone), "offline_max_frames": 200,
                                  "trust_code": False}
    for repo, trust in ((str(clone), False), (None, True)):
        with pytest.raises(RuntimeError, match="cannot load CoTracker3"):
            load_cotracker(repo, "online", trust)
    assert [(c[0], c[2]["source"], c[2]["trust_repo"]) for c in hub_calls] == [
        (str(clone), "local", False), ("facebookresearch/co-tracker", "github", True)]


def test_track_cli_refuses_github_cotracker_in_one_line(hub_calls, tmp_path, capsys):
    from armdata.testing.synthetic_video import make_video, write_frames

    frames = write_frames(make_video(0, num_frames=3), tmp_path / "f")
    assert armdata("track", frames, "--point", "5,5", "--tracker", "cotracker3",
                   "--device", "cpu") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--trust-cotracker-code" in err[0] and hub_calls == []

# --- issue 17: output folder safety ----------------------------------------------------------------

def armdata_manifest(**change) -> dict:
    manifest = {"schema_version": 2, "armdata_version": "0.1.0", "config": {"name": "x"},
                "counts": {}, "num_shards": 1, "statistics": "dataset_statistics.json",
                "rejected": {"path": "rejected/rejected.jsonl", "by_stage": {}},
                "shards": [{"path": "data/shard-00000-of-00001.parquet"}]}
    manifest.update(change)
    return manifest


def fake_output(root: Path, manifest: dict | str) -> Path:
    """A folder with the files `manifest` lists (their content does not matter here)."""
    for rel in ("data/shard-00000-of-00001.parquet", "rejected/rejected.jsonl",
                "dataset_statistics.json", "README.md"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    (root / "manifest.json").write_text(text)
    return root


def test_an_armdata_output_is_proven_by_content(tmp_path):
    why = storage.why_not_armdata_output
    assert why(str(fake_output(tmp_path / "ok", armdata_manifest()))) is None
    web = tmp_path / "web"
    web.mkdir()
    (web / "manifest.json").write_text('{"name": "app", "start_url": "/", "icons": []}')
    (web / "index.html").write_text("<html></html>")
    assert "lacks armdata's keys" in why(str(web))
    assert "not JSON" in why(str(fake_output(tmp_path / "cut", '{"schema_version": 2, "sha')))
    assert "schema_version 99" in why(str(fake_output(tmp_path / "new",
                                                      armdata_manifest(schema_version=99))))
    extra = fake_output(tmp_path / "extra", armdata_manifest())
    (extra / "data" / "notes.txt").write_text("mine")
    assert "data/notes.txt is not a file" in why(str(extra))
    listed = fake_output(tmp_path / "listed", armdata_manifest(
        files=[{"path": "data/notes.txt", "bytes": 4, "sha256": "0" * 64}]))
    (listed / "data" / "notes.txt").write_text("mine")
    assert why(str(listed)) is None                      # the manifest's `files` list counts
    empty_dir = fake_output(tmp_path / "dir", armdata_manifest())
    (empty_dir / "photos").mkdir()
    assert "photos/ is not a" in why(str(empty_dir))
    linked = fake_output(tmp_path / "linked", armdata_manifest())
    (linked / "data" / "shard-00000-of-00001.parquet").unlink()
    (linked / "data" / "shard-00000-of-00001.parquet").symlink_to(web / "index.html")
    assert "data/shard-00000-of-00001.parquet is a link" in why(str(linked))


def test_overwrite_keeps_a_web_app_folder(source, tmp_path, capsys):
    out = tmp_path / "site"
    out.mkdir()
    (out / "manifest.json").write_text('{"name": "app", "start_url": "/"}')
    (out / "index.html").write_text("<html></html>")
    assert small_build(source, out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "not an armdata output" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "manifest.json"]


def test_overwrite_refuses_an_output_with_a_foreign_file(source, tmp_path, capsys):
    out = tmp_path / "out"
    assert small_build(source, out) == 0
    (out / "index.html").write_text("<html></html>")
    before = (out / "manifest.json").read_bytes()
    assert small_build(source, out, "--overwrite") == 2
    assert "index.html is not a file" in capsys.readouterr().err
    assert (out / "index.html").exists() and (out / "manifest.json").read_bytes() == before


def test_lock_and_publish_go_through_a_symlink_alias(source, tmp_path, capsys):
    out = tmp_path / "out"
    assert small_build(source, out) == 0
    alias = tmp_path / "alias"
    alias.symlink_to(out, target_is_directory=True)
    with storage.output_lock(str(out)):
        assert small_build(source, alias, "--overwrite") == 2
    assert "another build is writing" in capsys.readouterr().err
    with storage.output_lock(str(alias)):
        assert small_build(source, out, "--overwrite") == 2
    assert "another build is writing" in capsys.readouterr().err
    (out / "manifest.json").touch()
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert small_build(source, alias, "--overwrite") == 0
    assert alias.is_symlink() and os.readlink(alias) == str(out)
    assert (out / "manifest.json").stat().st_mtime_ns != stamp       # published into the target
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias", "out"]


def test_a_folder_holding_only_a_link_is_not_empty(source, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(elsewhere, target_is_directory=True)
    assert small_build(source, out) == 2
    assert "not empty" in capsys.readouterr().err
    assert small_build(source, out, "--overwrite") == 2
    assert "not an armdata output" in capsys.readouterr().err
    assert (out / "link").is_symlink() and (elsewhere / "keep.txt").exists()


@pytest.mark.parametrize("case", ["dot", "empty", "parent_is_a_file"])
def test_bad_output_path_fails_before_beam(source, tmp_path, monkeypatch, capsys, case):
    from armdata.commands import build as build_module

    def no_beam(*args, **kwargs):
        raise AssertionError("the output should have been refused before any Beam work")

    monkeypatch.setattr(build_module, "build_graph", no_beam)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (tmp_path / "file.txt").write_text("x")
    output = {"dot": ".", "empty": "", "parent_is_a_file": str(tmp_path / "file.txt" / "out")}
    assert small_build(source, output[case], "--overwrite") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert {"dot": "current directory", "empty": "--output is empty",
            "parent_is_a_file": "file.txt is a file"}[case] in err
    assert list(cwd.iterdir()) == [] and (tmp_path / "file.txt").read_text() == "x"


def fail_writing_shards(monkeypatch, exc: BaseException) -> None:
    from armdata.pipeline.sinks import writer

    def fail(self, element, num_shards, stats):
        raise exc

    monkeypatch.setattr(writer.WriteShard, "process", fail)


def test_disk_full_is_one_line_and_keeps_the_work(source, tmp_path, monkeypatch, capsys):
    import errno

    fail_writing_shards(monkeypatch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    out = tmp_path / "out"
    assert small_build(source, out) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("armdata build: error: disk full") and "nothing was published" in last
    assert "Traceback" not in err                         # Beam's error log: its first line
    assert not out.exists()
    assert [p.name.split("-")[0] for p in tmp_path.iterdir()] == ["out.armdata"]  # work, kept
    assert storage.list_files(str(next(tmp_path.iterdir())))


def test_ctrl_c_is_one_line_and_keeps_the_work(source, tmp_path, monkeypatch, capsys):
    fail_writing_shards(monkeypatch, KeyboardInterrupt())
    out = tmp_path / "out"
    assert small_build(source, out) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("armdata build: interrupted") and "nothing was published" in last
    assert not out.exists()
    assert [p.name.split("-")[0] for p in tmp_path.iterdir()] == ["out.armdata"]


def test_library_errors_are_cut_to_their_first_line():
    import logging

    from armdata import logs

    try:
        raise OSError("No space left on device")
    except OSError:
        import sys

        record = logging.LogRecord("apache_beam.runners.common", logging.ERROR, __file__, 1,
                                   "%s [while running 'W']\nTraceback ...", ("OSError",),
                                   sys.exc_info())
    assert logs.LibraryNoise().filter(record)
    text = logging.Formatter().format(record)
    assert text == "OSError [while running 'W'] [cut to its first line; -v shows all]"

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
    with caplog.at_level(logging.WARNING, logger="armdata.pipeline.resume"):
        assert build("--config", "armdata_demo", "--source", new, "--output", out) == 0
    clean = tmp_path / "clean"
    assert build("--config", "armdata_demo", "--source", new, "--output", clean) == 0
    assert read_rows(out) == read_rows(clean)          # not the old source's spilled episodes
    assert "made from another source (same path, other content)" in caplog.text
    assert json.loads((out / "manifest.json").read_text())["episodes_reused"] == 0


def test_xyz_indices_outside_the_state_fail_before_beam(source, tmp_path, capsys, monkeypatch):
    """The demo's state has 7 values per step: an arm at [5, 6, 7] would give only null traces."""
    from armdata.commands import build as build_module

    config = config_with(tmp_path, "xyz_indices: [0, 1, 2]", "xyz_indices: [5, 6, 7]")
    monkeypatch.setattr(build_module, "build_graph", lambda *a, **k: pytest.fail("Beam ran"))
    assert build("--config", config, "--source", source, "--output", tmp_path / "o",
                 "--stages", "actions,trace") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "arms[0].xyz_indices [5, 6, 7] are outside state_key 'observation/state'" in err
    assert "7 values per step" in err and not (tmp_path / "o").exists()
