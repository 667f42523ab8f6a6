"""`armdata demo` as a user runs it: a subprocess with none of the libraries' quiet switches set,
every stage (VQ-VAE training, build with reasoning, inspect, preview, tiny-VLM training on the real
Qwen2 vocabulary, predict, view) on a small example, and nothing but armdata's own lines on the
terminal; then what it leaves in its folder, and that a rerun replaces only its own folder. The
default suite's one demo run (the demo is its slowest command) is shared by every test here."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import armdata

# One fragment of each library line that used to reach the terminal.
NOISE = ("absl::InitializeLog", "oneDNN", "Downloading and preparing dataset", "Generating splits",
         "Shuffling", "torchvision", "Writing model shards", "Loading weights",
         "Loading checkpoint shards", "[transformers]", "Traceback")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """(workdir, finished process) of one small demo run."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "TRANSFORMERS_VERBOSITY",
                        "HF_HUB_DISABLE_PROGRESS_BARS")}
    root = tmp_path_factory.mktemp("demo_run")
    work = root / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "armdata.cli", "demo", "--workdir", str(work), "--episodes", "2",
         "--steps", "4", "--size", "48", "--vqvae-epochs", "1", "--train-steps", "2"],
        capture_output=True, text=True, env=env, cwd=root, timeout=900)
    return work, done


def test_demo_prints_every_stage_and_no_library_lines(demo):
    work, done = demo
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    for noise in NOISE:
        assert noise not in out, (noise, out[-3000:])
    lines = done.stdout.splitlines()
    reasoning = next(line for line in lines if line.startswith("[demo] one row's reasoning: "))
    assert "PLAN: 1. " in reasoning and "MOVE: " in reasoning
    assert any(line.startswith("    reasoning  TASK: ") for line in lines)    # inspect's rows
    head = next(k for k, line in enumerate(lines) if "random weights, 2 steps: expect noise" in line)
    assert [line.split(":")[0].split(" (")[0] for line in lines[head + 1:head + 5]] == [
        "depth tokens", "trace", "action bins", "action"]                    # predict, readable
    assert "epoch 1: recon MSE" in out and "model saved to" in out
    assert (work / "view" / "index.html").exists() and list((work / "preview").glob("*.png"))


def test_demo_keeps_its_output_and_writes_previews(demo, tmp_path, capsys):
    from armdata.commands.demo import MARKER, prepare_workdir

    work, done = demo
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert f"everything is in {work}" in done.stdout
    assert (work / "output" / "manifest.json").exists() and (work / "source").is_dir()
    assert (work / "train" / "model" / "model.safetensors").exists()
    previews = sorted((work / "preview").glob("step_*.png"))
    assert 1 <= len(previews) <= 4
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("keep")
    assert armdata("demo", "--workdir", other, "--vqvae", work / "vqvae" / "vqvae.pt") == 2
    assert "not an armdata demo folder" in capsys.readouterr().err
    assert (other / "thesis.tex").read_text() == "keep"
    rerun = tmp_path / "demo"          # a copy: the other test reads the demo's own folder
    shutil.copytree(work, rerun)
    prepare_workdir(rerun)   # a rerun replaces its own folder (its build runs with --overwrite)
    assert not any((rerun / name).exists() for name in ("source", "preview", "tiny_vlm", "train"))
    assert (rerun / MARKER).exists() and (rerun / "output" / "manifest.json").exists()
