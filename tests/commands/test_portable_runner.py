"""The build through Beam's portable path (PortableRunner with an embedded job server and an
EXTERNAL worker pool in a separate process on 127.0.0.1, as Flink/Spark/Dataflow run it: pickled
DoFns executed by SDK workers over the Fn API) writes the same bytes as the default runner."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import build

TIMEOUT_S = 480


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker pool exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"worker pool did not listen on {port}")


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.slow
def test_portable_runner_matches_direct(bridge_dir: Path, tmp_path: Path) -> None:
    args = ["--config", "bridge_dataset", "--source", str(bridge_dir), "--max-episodes", "6",
            "--num-shards", "2"]
    direct = tmp_path / "direct"
    started = time.monotonic()
    assert build(*args, "--output", direct) == 0
    print(f"direct build (in-process): {time.monotonic() - started:.1f} s")

    # Workers import the installed armdata, as on a cluster; the pool starts them as `python` from
    # PATH, so that must be this interpreter (a virtual environment's too).
    env = dict(os.environ, PATH=os.pathsep.join([os.path.dirname(sys.executable),
                                                 os.environ.get("PATH", "")]))
    port = free_port()
    pool = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                             f"--service_port={port}"], env=env, cwd=tmp_path,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    portable = tmp_path / "portable"
    try:
        wait_for_port(port, pool)
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "armdata.cli", "build", *args, "--output", str(portable),
             "--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=EXTERNAL",
             f"--environment_config=127.0.0.1:{port}"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S)
        print(f"portable build: {time.monotonic() - started:.1f} s")
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        os.killpg(pool.pid, signal.SIGTERM)   # the pool and the SDK workers it started
        pool.wait(timeout=30)

    a, b = files(direct), files(portable)
    assert sorted(a) == sorted(b)
    for name in a:   # shards, statistics, card, rejected/ and the manifest with its counters
        assert a[name] == b[name], name
