"""Every subcommand, run as a user runs it (`armdata ...` in a subprocess, no network, an empty
Hugging Face cache, HF_HUB_OFFLINE unset), refuses bad arguments the same way: one line on
stderr, exit 2, fast (no Hub retries), and nothing created where it was told to write."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import numpy as np
import pytest

from armdata.schemas.episode import encode_png
from tests.conftest import build

# A refusal costs under 3 CPU seconds (start-up included: torch, TensorFlow). Wall time depends
# on the machine's load; its bound only catches waits (the Hub client's retries, ~25 s a model,
# which also print "Retry").
WALL_S, CPU_S = 30.0, 3.0
ARMDATA = [sys.executable, "-m", "armdata.cli"]


@pytest.fixture(scope="module")
def files(bridge_dir, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_args")
    built = root / "built"
    assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", built,
                 "--max-episodes", "1", "--stages", "actions") == 0
    png = root / "depth.png"
    png.write_bytes(encode_png(np.zeros((8, 8), np.uint8)))
    frames = root / "frames"
    frames.mkdir()
    (root / "taken").mkdir()
    (root / "taken" / "mine.txt").write_text("not a demo")
    return {"BUILT": str(built), "SRC": str(bridge_dir), "PNG": str(png), "FRAMES": str(frames),
            "TAKEN": str(root / "taken"), "HOME": str(root / "hf_home")}


UNREACHABLE = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "x"}
# (case id, arguments; NEW is the path that must not be created, extra environment)
CASES = [
    ("build-missing-source", "build --config bridge_dataset --source /nope --output NEW", {}),
    ("build-unknown-config", "build --config brige_dataset --source SRC --output NEW", {}),
    ("build-bad-number", "build --config bridge_dataset --source SRC --output NEW "
                         "--num-shards 0", {}),
    ("build-not-a-number", "build --config bridge_dataset --source SRC --output NEW "
                           "--num-shards two", {}),
    ("build-hub-models-offline", "build --config bridge_dataset --source SRC --output NEW "
                                 "--stages actions,depth,trace,reasoning", {}),
    ("build-missing-model-dir", "build --config bridge_dataset --source SRC --output NEW "
                                "--stages actions,depth --depth-model /no/dir", {}),
    ("train-missing-data", "train --data /nope --out NEW --max-steps 4", {}),
    ("train-default-model-offline", "train --data BUILT --out NEW --max-steps 4", {}),
    ("train-missing-model-dir", "train --data BUILT --out NEW --model /no/dir", {}),
    ("train-bad-id", "train --data BUILT --out NEW --model not/a/hub/id", {}),
    ("predict-missing-model", "predict --model /no/dir --image PNG --instruction x", {}),
    ("predict-missing-image", "predict --model /no/dir --image NEW --instruction x", {}),
    ("predict-hub-model-offline", "predict --model Qwen/Qwen2-VL-2B-Instruct --image PNG "
                                  "--instruction x", {}),
    ("push-unreachable", "push BUILT --repo a/NEW", UNREACHABLE),
    ("push-no-scheme", "push BUILT --repo a/NEW", {**UNREACHABLE, "HF_ENDPOINT": "127.0.0.1:9"}),
    ("push-missing-output", "push NEW --repo a/b", UNREACHABLE),
    ("export-missing-output", "export /nope --format lerobot --out NEW", {}),
    ("export-bad-format", "export BUILT --format nope --out NEW", {}),
    ("inspect-missing", "inspect NEW", {}),
    ("preview-missing-episode", "preview BUILT --episode nope --out NEW", {}),
    ("preview-bad-height", "preview BUILT --episode nope --out NEW --height 0", {}),
    ("track-missing-frames", "track NEW --point 1,2", {}),
    ("track-bad-point", "track FRAMES --point one --json", {}),
    ("track-pointing-offline", "track FRAMES --localizer pointing", {}),
    ("depth-tokens-missing-file", "depth-tokens NEW", {}),
    ("depth-tokens-hub-offline", "depth-tokens PNG", {}),
    ("train-vqvae-missing-source", "train-vqvae /nope --out NEW", {}),
    ("train-vqvae-bad-epochs", "train-vqvae FRAMES --out NEW --epochs 0", {}),
    ("demo-taken-workdir", "demo --workdir TAKEN", {}),
    ("demo-bad-episodes", "demo --workdir NEW --episodes 0", {}),
    ("view-missing", "view /nope --out NEW", {}),
    ("samples-missing-output", "samples /nope --images NEW", {}),
    ("samples-without-depth-and-trace", "samples BUILT --images NEW", {}),
    ("samples-bad-n", "samples BUILT --n 0 --images NEW", {}),
    ("samples-bad-drawn-share", "samples BUILT --parts none --drawn-trace 2 --images NEW", {}),
    ("samples-bad-form", "samples BUILT --sample-form molmo --images NEW", {}),
]


@pytest.mark.parametrize("case, line, env", CASES, ids=[c[0] for c in CASES])
def test_bad_arguments(case, line, env, files, tmp_path):
    new = tmp_path / "new"
    argv = [{"NEW": str(new), **files}.get(a, a) for a in line.split()]
    environ = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN")}
    environ.update({"HF_HOME": files["HOME"], "HF_ENDPOINT": "http://127.0.0.1:9", **env})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(ARMDATA + argv, capture_output=True, text=True, env=environ,
                          cwd=tmp_path, timeout=120)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1, (done.returncode, done.stderr[-3000:])
    assert err[0].startswith(f"armdata {argv[0]}: error: "), err
    assert not new.exists(), sorted(p.name for p in new.rglob("*"))
    assert not list(tmp_path.glob("new.*")), list(tmp_path.glob("new.*"))
    assert "Retry" not in done.stderr and "Traceback" not in done.stderr
    assert wall < WALL_S and cpu < CPU_S, (wall, cpu)
