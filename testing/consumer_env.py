"""Consumers' own readers in separate virtual environments, for the interop tests (an export is
tested by its consumer's reader, never only by ours). Each environment is created once under
ARMDATA_INTEROP_CACHE (default ~/.cache/armdata-interop, outside the repository; CI caches it),
keyed by what it installs, with the consumer's own pins (its own torch included); one whose
install did not finish is rebuilt."""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

# LeRobot codebase version → the lerobot release whose LeRobotDataset reads it
LEROBOT_READERS = {"v2.1": "lerobot==0.3.3", "v3.0": "lerobot==0.4.4"}


def cache_dir() -> Path:
    return Path(os.environ.get("ARMDATA_INTEROP_CACHE",
                               Path.home() / ".cache" / "armdata-interop"))


def consumer_python(requirement: str) -> Path:
    """The python of a virtual environment with `requirement` installed (pip, its own
    dependency pins), created on first use."""
    env = cache_dir() / requirement.replace("=", "-").replace("<", "-").replace(">", "-")
    python, done = env / "bin" / "python", env / ".armdata-complete"
    env.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{env}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # two test runs never build the same one at once
        if not done.exists():
            log.info("creating %s for %s", env, requirement)
            shutil.rmtree(env, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q",
                            "--disable-pip-version-check", requirement], check=True)
            done.write_text(requirement + "\n")
    return python
