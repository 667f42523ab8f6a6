"""Resuming a killed build (`pipeline/resume.py`): a build killed part-way (SIGTERM, then SIGKILL,
in a subprocess) and rerun gives the same bytes as an uninterrupted build, without running the
stages again for the finished episodes; damaged or foreign work is never reused; `--no-resume`
recomputes; stale directories beside the output are reported and cleaned on request."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from armdata.pipeline import resume
from armdata.pipeline.sinks import storage
from armdata.pipeline.sinks.writer import read_spilled
from armdata.testing.synthetic import write_synthetic_rlds
from armdata.schemas.episode import Episode, Rejection, Step, encode_jpeg
from tests.conftest import LOCAL_BEAM, build, build_killed_while_writing

EPISODES, STEPS = 10, 6
FAULTS = {1: "corrupt_jpeg", 3: "nan_action", 6: "empty"}   # step-level and standardize rejections
# The build under test: the depth stage (sensor depth + VQ-VAE codes) is the "expensive" stage.
STAGES = ["--stages", "actions,depth", "--depth-source", "sensor", "--depth-device", "cpu"]
# Run in a subprocess: the CLI with the depth stage slowed down, so that a kill lands part-way
# through the episodes however fast this machine is.
SLOW_CLI = """
import sys, time
from armdata.transforms.depth import DepthStage
fast = DepthStage.process
DepthStage.process = lambda self, episode: (time.sleep(0.4), fast(self, episode))[1]
from armdata.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def command(tiny_vqvae, tmp_path_factory) -> list[str]:
    """Everything of the build command but the output."""
    root = tmp_path_factory.mktemp("resume_src")
    source = write_synthetic_rlds(root, num_episodes=EPISODES, num_steps=STEPS,
                                  image_size=(32, 32), seed=5, faults=FAULTS)
    return ["--config", "armdata_demo", "--source", str(source), *STAGES, "--vqvae",
            str(tiny_vqvae)]


@pytest.fixture(scope="module")
def clean(command, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume_clean") / "out"
    assert build(*command, "--output", out) == 0
    return out


@pytest.fixture(scope="module")
def terminated(command, tmp_path_factory) -> tuple[Path, int]:
    """A build sent SIGTERM while writing its shards (every episode finished): output, exit code."""
    out = tmp_path_factory.mktemp("resume_terminated") / "out"
    return out, build_killed_while_writing(*command, "--output", out)


@pytest.fixture(scope="module")
def finished_work(terminated) -> Path:
    (work,) = work_dirs(terminated[0])
    return work


def work_dirs(output: Path) -> list[Path]:
    return sorted(output.parent.glob(output.name + resume.WORK_MARK + "*"))


def staging_dirs(output: Path) -> list[Path]:
    return sorted(output.parent.glob(output.name + ".armdata-staging-*"))


def records(work: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(work.glob("episodes/*/*.json"))]


def with_work(work: Path, output: Path) -> Path:
    """A copy of a work directory, placed where a build of `output` looks for it."""
    target = output.parent / (output.name + work.name[work.name.index(resume.WORK_MARK):])
    shutil.copytree(work, target)
    return target


def manifest(output: Path) -> dict:
    return json.loads((output / "manifest.json").read_text())


def assert_same_output(output: Path, expected: Path) -> None:
    """Every file byte-identical; in the manifest, all but this run's counters and reuse count."""
    files = sorted(p.relative_to(expected) for p in expected.rglob("*") if p.is_file())
    assert sorted(p.relative_to(output) for p in output.rglob("*") if p.is_file()) == files
    for rel in files:
        if rel.name != "manifest.json":
            assert (output / rel).read_bytes() == (expected / rel).read_bytes(), rel
    strip = ("counters", "episodes_reused")
    assert {k: v for k, v in manifest(output).items() if k not in strip} \
        == {k: v for k, v in manifest(expected).items() if k not in strip}


def wait_for_records(work_glob: tuple[Path, str], at_least: int, proc: subprocess.Popen) -> int:
    parent, pattern = work_glob
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        n = len(list(parent.glob(pattern)))
        if n >= at_least:
            return n
        assert proc.poll() is None, "the build ended before it could be killed"
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} finished episodes after 240 s")


def test_killed_twice_then_rerun_is_identical_and_reuses_finished_episodes(command, clean,
                                                                           tmp_path):
    out = tmp_path / "out"
    argv = [sys.executable, "-c", SLOW_CLI, "build", *command, "--output", str(out), *LOCAL_BEAM]
    env = dict(os.environ)
    finished = (tmp_path, out.name + resume.WORK_MARK + "*/episodes/*/*.json")

    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = wait_for_records(finished, 2, proc)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]
    assert b"armdata: terminated by SIGTERM" in err
    assert not out.exists() and not staging_dirs(out)
    (work,) = work_dirs(out)
    assert first <= len(records(work)) < EPISODES - 1

    # Second run of the same command: reuses those, finishes more, is killed without warning.
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_records(finished, len(records(work)) + 2, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not out.exists() and work_dirs(out) == [work]
    done = records(work)
    assert len(done) < EPISODES - 1     # the faulty "empty" episode never gets a record

    assert build(*command, "--output", out) == 0
    assert_same_output(out, clean)
    m, c = manifest(out), manifest(clean)
    assert m["episodes_reused"] == m["counters"]["resume/episodes_reused"] == len(done)
    # the depth stage ran only on the episodes that were not finished before
    reused_rows = sum(r["spill"]["rows"] for r in done if r["spill"])
    assert m["counters"]["depth/frames"] + reused_rows == c["counters"]["depth/frames"]
    assert reused_rows > 0
    assert not work_dirs(out) and not staging_dirs(out)       # deleted after the publish


def test_rerun_after_a_crash_reuses_every_episode(command, clean, finished_work, tmp_path):
    out = tmp_path / "out"
    with_work(finished_work, out)
    done = records(finished_work)
    # a step rejected by validation is kept with its episode's record, for rejected.jsonl
    assert any(r["rejections"] for r in done)
    assert build(*command, "--output", out) == 0
    assert_same_output(out, clean)
    m = manifest(out)
    assert m["episodes_reused"] == len(done) == EPISODES - 1
    assert "depth/frames" not in m["counters"] and "validate/steps_ok" not in m["counters"]


def test_half_written_or_damaged_work_is_not_reused(command, clean, finished_work, tmp_path):
    out = tmp_path / "out"
    work = with_work(finished_work, out)
    specs = sorted(work.glob("episodes/*/*.json"))
    # killed while writing the spill: a spill without its commit record
    specs[0].unlink()
    # a spill cut short (the record says how long it must be)
    spill = specs[1].with_suffix(".arrow")
    spill.write_bytes(spill.read_bytes()[: spill.stat().st_size // 2])
    # a commit record that is not JSON, one of another command, a leftover temporary file
    specs[2].write_text('{"key": ')
    spec = json.loads(specs[3].read_text())
    specs[3].write_text(json.dumps({**spec, "key": "0" * 16}))
    (specs[4].parent / (specs[4].name + ".tmp-abc")).write_text("{}")
    assert build(*command, "--output", out) == 0
    assert_same_output(out, clean)
    m = manifest(out)
    assert m["episodes_reused"] == EPISODES - 1 - 4
    assert m["counters"]["resume/bad_records"] == 3                   # the record-less one is new


def test_a_spill_damaged_in_place_is_recomputed(command, clean, finished_work, tmp_path):
    """4 KiB zeroed inside a spill (same size, e.g. blocks lost in a crash): the CRC32C in its
    commit record no longer matches, so the episode is recomputed, not published broken."""
    out = tmp_path / "out"
    work = with_work(finished_work, out)
    spill = max(work.glob("episodes/*/*.arrow"), key=lambda p: p.stat().st_size)
    data = bytearray(spill.read_bytes())
    start = len(data) // 4
    data[start:start + 4096] = bytes(len(data[start:start + 4096]))
    spill.write_bytes(bytes(data))
    assert build(*command, "--output", out) == 0
    assert_same_output(out, clean)
    m = manifest(out)
    assert m["counters"]["resume/bad_records"] == 1
    assert m["episodes_reused"] == EPISODES - 1 - 1


def test_changed_command_does_not_reuse_and_reports_the_stale_work(command, clean, finished_work,
                                                                   tmp_path, caplog):
    out = tmp_path / "out"
    stale = with_work(finished_work, out)
    stale_staging = tmp_path / "out.armdata-staging-0123456789ab"
    (stale_staging / "data").mkdir(parents=True)
    (stale_staging / "data" / "part.parquet").write_bytes(b"x" * 1000)
    without_depth = command[:command.index("--stages")] + ["--stages", "actions"]
    with caplog.at_level(logging.WARNING, logger="armdata.pipeline.resume"):
        assert build(*without_depth, "--output", out) == 0
    m = manifest(out)
    assert m["stages"] == ["actions"] and m["episodes_reused"] == 0
    assert m["counters"]["validate/steps_ok"] == manifest(clean)["counters"]["validate/steps_ok"]
    reported = caplog.text
    assert f"stale build directory {stale} (" in reported
    assert f"stale build directory {stale_staging} (1.0 kB)" in reported
    assert stale.exists() and stale_staging.exists()          # reported, not deleted

    caplog.clear()
    stats = ["--stats", str(clean / "dataset_statistics.json")]
    with caplog.at_level(logging.WARNING, logger="armdata.pipeline.resume"):
        assert build(*without_depth, *stats, "--max-episodes", "3", "--output", out,
                     "--overwrite", "--clean-stale") == 0
    assert f"deleted stale build directory {stale_staging} (1.0 kB)" in caplog.text
    assert not stale.exists() and not stale_staging.exists()


def test_no_resume_recomputes(command, clean, finished_work, tmp_path):
    out = tmp_path / "out"
    with_work(finished_work, out)
    assert build(*command, "--output", out, "--no-resume") == 0
    assert_same_output(out, clean)
    m = manifest(out)
    assert m["episodes_reused"] == 0
    assert m["counters"]["depth/frames"] == manifest(clean)["counters"]["depth/frames"]


def test_sigterm_while_writing_removes_staging_and_keeps_work(terminated):
    out, code = terminated
    assert code == 128 + signal.SIGTERM
    assert not out.exists() and not staging_dirs(out)
    (work,) = work_dirs(out)
    assert len(records(work)) == EPISODES - 1


def test_an_episode_rejected_by_a_stage_is_recorded_as_finished(tmp_path):
    episodes = str(tmp_path / "episodes")
    rejection = Rejection("d", "d/1", None, "depth", "no usable steps left", steps=3)
    finish = resume.FinishEpisode(episodes, "k" * 16)
    finish.setup()
    finish.start_bundle()
    out = list(finish.process(resume.Pending("d/1", None, [rejection])))
    finish.finish_bundle()
    assert [o.value for o in out] == [rejection]
    assert resume.read_record(episodes, "k" * 16, "d/1") == (None, [rejection])
    assert resume.read_record(episodes, "k" * 16, "d/2") is None      # never finished
    with pytest.raises(ValueError, match="work key k"):                 # another command's
        resume.read_record(episodes, "j" * 16, "d/1")


def test_work_of_other_armdata_code_is_discarded(tmp_path, caplog):
    out = str(tmp_path / "out")
    base = {"config": "c"}
    identity = {"source": "s" * 64, "code": "a" * 64}
    work, key = resume.prepare_work_dir(out, base, identity, True, False)
    (Path(work) / "episodes").mkdir()
    (Path(work) / "episodes" / "x.json").write_text("{}")
    assert resume.prepare_work_dir(out, base, identity, True, False) == (work, key)
    assert (Path(work) / "episodes" / "x.json").exists()            # same identity: reused
    with caplog.at_level(logging.WARNING, logger="armdata.pipeline.resume"):
        again, other = resume.prepare_work_dir(out, base, {**identity, "code": "b" * 64}, True,
                                               False)
    assert again == work and other != key
    assert not (Path(work) / "episodes").exists()
    assert f"discarding {work}: its episodes were made from another armdata code" in caplog.text


def small_episode(name: str) -> Episode:
    image = encode_jpeg(np.zeros((8, 8, 3), np.uint8))
    return Episode("d", f"d/{name}", 3, [Step(i, image, np.full(7, i, np.float32),
                                               np.zeros(2, np.float32), "go") for i in range(3)])


def finish(episodes: str, pending: list[resume.Pending]) -> list:
    """One bundle of FinishEpisode: its outputs, once the bundle has ended."""
    fn = resume.FinishEpisode(episodes, "k" * 16)
    fn.setup()
    fn.start_bundle()
    try:
        out = [o for p in pending for o in fn.process(p)]
        fn.finish_bundle()
    finally:
        fn.teardown()
    return out


def test_episode_commit_syncs_three_times_and_never_names_unsynced_data(tmp_path, monkeypatch):
    """Per episode: the spill and the record are synced, renamed (spill first) and their folder
    synced once: 3 syncs, was 4. The spill's CRC32C is taken before it is written, not read back.
    The bundle ends with every commit durable."""
    events: list[tuple[str, str]] = []
    synced = storage.fsync
    rename = os.replace

    def fsync(path):
        time.sleep(0.02)   # a slow disk: the bundle must still end with every commit done
        synced(path)
        events.append(("sync", str(path)))

    def replace(src, dst):
        assert ("sync", str(src)) in events, f"{src} renamed before it was synced"
        rename(src, dst)
        events.append(("rename", str(dst)))

    def read_back(path):
        raise AssertionError(f"{path} read back to checksum it")

    monkeypatch.setattr(storage, "fsync", fsync)
    monkeypatch.setattr(storage.os, "replace", replace)
    monkeypatch.setattr(storage, "crc32c_of", read_back)
    episodes = str(tmp_path / "episodes")
    names = ["a", "b", "c"]
    out = finish(episodes, [resume.Pending(f"d/{n}", small_episode(n)) for n in names])
    assert [o.episode_id for o in out] == [f"d/{n}" for n in names]
    for name in names:
        spill, record = resume.record_paths(episodes, f"d/{name}")
        folder = os.path.dirname(spill)
        mine = [e for e in events if folder in (e[1], os.path.dirname(e[1]))]
        assert [kind for kind, _ in mine] == ["sync", "sync", "rename", "rename", "sync"]
        assert [path for kind, path in mine if kind == "rename"] == [spill, record]
        assert mine[-1][1] == folder                                # after both renames
        assert read_spilled(spill).num_rows == 3
    monkeypatch.undo()
    for name in names:
        summary, rejections = resume.read_record(episodes, "k" * 16, f"d/{name}")
        assert summary.rows == 3 and rejections == []
    assert not [p for p in Path(episodes).rglob("*") if ".tmp-" in p.name]


def test_spill_checksum_is_crc32c(tmp_path):
    """The commit record's checksum is CRC32C (Castagnoli), as its name says: the standard check
    value, the same over a file read in chunks, and it changes with one flipped bit."""
    assert storage.crc32c(b"123456789") == "e3069283"   # the CRC-32C check value (RFC 3720)
    data = bytes(range(256)) * 5000
    path = tmp_path / "x"
    path.write_bytes(data)
    assert storage.crc32c_of(str(path), chunk=1000) == storage.crc32c(data)
    path.write_bytes(data[:777] + bytes([data[777] ^ 1]) + data[778:])
    assert storage.crc32c_of(str(path), chunk=1000) != storage.crc32c(data)


def test_a_failed_commit_fails_the_bundle_and_leaves_nothing(tmp_path, monkeypatch):
    def disk_full(path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage, "fsync", disk_full)
    episodes = tmp_path / "episodes"
    with pytest.raises(OSError, match="No space left"):
        finish(str(episodes), [resume.Pending("d/a", small_episode("a"))])
    assert [p for p in episodes.rglob("*") if p.is_file()] == []


def test_work_directory_is_deleted_by_several_threads(tmp_path, monkeypatch):
    """On a busy disk every unlink waits for the journal: the files of a work directory are
    unlinked from several threads at once, so the waits overlap; links are removed, never
    followed."""
    work = tmp_path / "out.armdata-work-0123"
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    for i in range(40):
        (work / "episodes" / f"{i:02x}").mkdir(parents=True)
        (work / "episodes" / f"{i:02x}" / "e.arrow").write_bytes(b"x")
    (work / "link").symlink_to(outside)
    threads = set()
    remove = os.remove

    def slow_remove(path, *a, **k):
        threads.add(threading.get_ident())
        time.sleep(0.01)
        remove(path, *a, **k)

    monkeypatch.setattr(os, "remove", slow_remove)
    storage.delete_tree(str(work))
    assert not work.exists() and outside.read_text() == "not ours"
    assert len(threads) > 1


def test_record_floats_round_trip_exactly():
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(40, 7)).astype(np.float32)
    for values in (actions, actions[:, :0], np.float32([[1e-38, -3.4e38, 0.1]])):
        back = resume.unpack_floats(resume.pack_floats(values), len(values))
        assert back.dtype == np.float32 and back.shape == values.shape
        assert back.tobytes() == values.tobytes()
    with pytest.raises(ValueError):
        resume.unpack_floats("not base64!", 1)
