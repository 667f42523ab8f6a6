"""`armdata demo` as a user runs it: a subprocess with none of the libraries' quiet switches set,
every stage (VQ-VAE training, build with reasoning, inspect, preview, tiny-VLM training, predict,
view) on a small example, and nothing but armdata's own lines on the terminal."""
from __future__ import annotations

import os
import subprocess
import sys

# One fragment of each library line that used to reach the terminal.
NOISE = ("absl::InitializeLog", "oneDNN", "Downloading and preparing dataset", "Generating splits",
         "Shuffling", "torchvision", "Writing model shards", "Loading weights",
         "Loading checkpoint shards", "[transformers]", "Traceback")


def test_demo_prints_every_stage_and_no_library_lines(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "TRANSFORMERS_VERBOSITY",
                        "HF_HUB_DISABLE_PROGRESS_BARS")}
    work = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "armdata.cli", "demo", "--workdir", str(work), "--episodes", "2",
         "--steps", "4", "--size", "48", "--vqvae-epochs", "1", "--train-steps", "2"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
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
