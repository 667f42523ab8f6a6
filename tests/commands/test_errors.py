"""How failures surface: data problems are rejections, code bugs and infrastructure errors fail
the bundle (so the runner retries and the job stops); CLI errors a user can cause end in one line
with exit status 2 (tracebacks only with --debug); logging is quiet unless -v."""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from apache_beam.pvalue import TaggedOutput

from armdata.pipeline import graph
from armdata import logs
from armdata.errors import UsageError
from armdata.testing.synthetic import write_synthetic_rlds
from armdata.schemas.config import load_config
from armdata.schemas.episode import DataError, Episode, Step
from tests.conftest import REPO, armdata, build
from armdata.testing.synthetic_video import make_video, write_frames
from armdata.testing.tiny_models import make_depth_assets
from armdata.pipeline.resume import Pending
from armdata.transforms.base import Stage
from armdata.transforms.standardize import StandardizeError


class Failing(Stage):
    name = "failing"

    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc

    def process(self, episode):
        raise self.exc


def episode() -> Episode:
    step = Step(index=0, image=b"", action=np.zeros(7, np.float32),
                state=np.zeros(3, np.float32), instruction="x")
    return Episode("d", "d/0", 1, [step])


def run_stage(stage: Stage) -> list:
    dofn = graph.RunStage(stage)
    dofn.setup()
    dofn.start_bundle()
    return list(dofn.process(Pending("d/0", episode())))


def test_data_error_is_a_rejection():
    (out,) = run_stage(Failing(DataError("frame 3 is black")))
    assert isinstance(out, Pending) and out.episode is None
    (rejection,) = out.rejections
    assert rejection.reason == "frame 3 is black" and rejection.step is None


@pytest.mark.parametrize("exc", [TypeError("bug in our code"),
                                 torch.cuda.OutOfMemoryError("CUDA out of memory"),
                                 ImportError("no module named cv2"), ValueError("a bug too")])
def test_bugs_and_infrastructure_errors_fail_the_bundle(exc):
    with pytest.raises(type(exc)):
        run_stage(Failing(exc))


def test_standardize_rejects_data_and_raises_bugs(monkeypatch):
    dofn = graph.Standardize(load_config("armdata_demo"))
    raw = {"tfds_id": "t", "steps": {"action": np.zeros((2, 7))}}
    for exc, rejected in ((StandardizeError("missing step key"), True),
                          (TypeError("bug"), False)):
        def fail(*args, exc=exc):
            raise exc
        monkeypatch.setattr(graph, "standardize_episode", fail)
        if rejected:
            tags = [o.tag for o in dofn.process(raw) if isinstance(o, TaggedOutput)]
            assert tags == [graph.REJECTED, "accounting"]
        else:
            with pytest.raises(TypeError):
                list(dofn.process(raw))


def test_out_of_memory_fails_the_build(tmp_path, monkeypatch):
    from armdata.transforms.validate import ValidateStage

    source = write_synthetic_rlds(tmp_path / "src", num_episodes=2, num_steps=3,
                                  image_size=(16, 16), seed=1)

    def oom(self, episode):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    monkeypatch.setattr(ValidateStage, "process", oom)
    with pytest.raises(Exception, match="CUDA out of memory"):
        build("--config", "armdata_demo", "--source", source, "--output", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


# --- one-line CLI errors -------------------------------------------------------------------------

def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_depth_tokens_bad_checkpoints(tmp_path, capsys):
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"garbage")
    pickled = tmp_path / "pickled.pt"
    torch.save({"weights": {}, "args": argparse.Namespace(lr=1)}, pickled)
    for path, problem in ((garbage, "not a torch checkpoint"),
                          (pickled, "weights-only loading refuses"),
                          (tmp_path / "none.pt", "does not exist")):
        assert armdata("depth-tokens", "--device", "cpu", "--vqvae", path, image) == 2
        line = one_error_line(capsys)
        assert line.startswith("armdata depth-tokens: error: ") and str(path) in line
        assert problem in line
    with pytest.raises(UsageError, match="not a torch checkpoint"):
        armdata("--debug", "depth-tokens", "--device", "cpu", "--vqvae", garbage, image)


def test_missing_model_directory(tiny_vqvae, tmp_path, capsys):
    from PIL import Image

    rgb = tmp_path / "frame.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(rgb)
    assert armdata("depth-tokens", "--device", "cpu", "--vqvae", tiny_vqvae, "--depth-model",
                   tmp_path / "no_such_model", rgb) == 2
    assert "no_such_model" in one_error_line(capsys)


def test_track_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert armdata("track", tmp_path / "empty", "--point", "1,1") == 2
    assert one_error_line(capsys) == f"armdata track: error: no frames in {tmp_path / 'empty'}"
    frames = write_frames(make_video(0, num_frames=3), tmp_path / "f")
    assert armdata("track", frames, "--point", "400,10") == 2
    assert "outside the" in one_error_line(capsys)
    with pytest.raises(SystemExit) as exit_info:
        armdata("track", frames, "--point", "nan,3")
    assert exit_info.value.code == 2
    assert "--point" in capsys.readouterr().err.strip().splitlines()[-1]


def test_unreadable_model_config_is_one_line(tmp_path, capsys):
    from PIL import Image

    depth_model, vqvae = make_depth_assets(tmp_path / "assets")
    (depth_model / "config.json").write_text("{not json")
    rgb = tmp_path / "frame.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(rgb)
    capsys.readouterr()
    assert armdata("depth-tokens", "--device", "cpu", "--vqvae", vqvae, "--depth-model",
                   depth_model, rgb) == 2
    assert str(depth_model) in one_error_line(capsys)


# --- logging -------------------------------------------------------------------------------------

def test_verbose_flag_sets_debug_logging(tmp_path, capsys):
    assert armdata("-v", "inspect", tmp_path) == 2
    assert logging.getLogger().level == logging.DEBUG
    logging.getLogger("armdata.pipeline.test").debug("debug line")
    logging.getLogger("absl").info("absl line")
    err = capsys.readouterr().err
    assert "debug line" in err and "absl line" in err
    assert armdata("inspect", tmp_path, "--verbose") == 2       # also after the command
    assert logging.getLogger().level == logging.DEBUG
    assert armdata("inspect", tmp_path) == 2
    assert logging.getLogger().level == logging.INFO
    logging.getLogger("absl").warning("absl noise")
    logging.getLogger("tensorflow").warning("tf noise")
    logging.getLogger("armdata.pipeline.test").info("our info")
    err = capsys.readouterr().err
    assert "noise" not in err and "our info" in err


def test_help_prints_no_library_warning():
    env = dict(os.environ)
    done = subprocess.run([sys.executable, "-m", "armdata.cli", "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "usage: armdata" in done.stdout
    assert done.stderr == ""


def test_library_noise_filter():
    f = logs.LibraryNoise()

    def record(name: str, level: int) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, "m", None, None)

    assert f.filter(record("armdata.commands.build", logging.INFO))
    assert f.filter(record("armdata.transforms.trace", logging.WARNING))
    assert not f.filter(record("absl", logging.INFO))
    assert not f.filter(record("tensorflow", logging.WARNING))
    assert not f.filter(record("apache_beam.runners.worker.sdk_worker", logging.WARNING))
    assert not f.filter(record("root", logging.WARNING))          # "apitools not found"
    assert f.filter(record("apache_beam.runners.worker.sdk_worker", logging.ERROR))


@pytest.mark.slow
def test_plain_build_prints_progress_and_summary_only(tmp_path):
    """A real multi-process build: workers start through armdata.beam_worker, quietly."""
    source = write_synthetic_rlds(tmp_path / "src", num_episodes=4, num_steps=3,
                                  image_size=(16, 16), seed=2, num_shards=2)
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run([sys.executable, "-m", "armdata.cli", "build", "--config",
                           "armdata_demo", "--source", str(source), "--output",
                           str(tmp_path / "out"), "--direct_num_workers=2"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"published {tmp_path / 'out'}: 4 episodes")
    lines = [line for line in done.stderr.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith("episodes through all stages")]
    assert [line.split(" ", 3)[-1] for line in lines] == [
        line.split(" ", 3)[-1] for line in lines if " armdata.commands.build: building " in line], lines


def test_worker_stderr_cuts_a_printed_traceback_to_its_last_line():
    """Beam's worker prints a failed bundle's traceback to stderr; the worker entry point cuts it."""
    import io
    import traceback

    out = io.StringIO()
    stream = logs.CutTracebacks(out)
    try:
        raise OSError(28, "No space left on device")
    except OSError:
        print(traceback.format_exc(), file=stream)
    print("plain line", file=stream)
    lines = out.getvalue().splitlines()
    assert lines == ["OSError: [Errno 28] No space left on device [traceback cut; -v shows all]",
                     "plain line"], lines
