"""Library noise stays off the terminal: a plain run sets the libraries' quiet switches before
they are imported, and the synthetic writer prints none of tfds' download lines or bars."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = """
from armdata import logs
logs.configure(verbose=False)
import transformers
from transformers.utils import logging as tlog
from armdata.testing.synthetic import write_synthetic_rlds
write_synthetic_rlds(sys.argv[1], num_episodes=1, num_steps=2, image_size=(16, 16))
print("quiet" if tlog.get_verbosity() >= tlog.ERROR and not tlog.is_progress_bar_enabled()
      else "noisy")
"""


def test_plain_run_prints_no_library_lines(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "TRANSFORMERS_VERBOSITY",
                        "HF_HUB_DISABLE_PROGRESS_BARS")}
    done = subprocess.run([sys.executable, "-c", "import sys\n" + SCRIPT, str(tmp_path / "s")],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "quiet", out
    for noise in ("Downloading and preparing", "Generating splits", "oneDNN", "absl::",
                  "Shuffling", "[transformers]"):
        assert noise not in out, (noise, out[-2000:])
