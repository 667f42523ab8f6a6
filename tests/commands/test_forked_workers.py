"""Local Beam workers forked from the launcher's worker server (`forked_workers`): the same
dataset as workers started by Beam, nothing left running afterwards, and the cases where the
launcher must not fork."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

from armdata import worker_client
from armdata.commands.build import workers
from armdata.testing.synthetic import write_synthetic_rlds
from tests.conftest import REPO


def run_build(source, out, tmp_path, *extra: str,
              **env: str) -> tuple[subprocess.CompletedProcess, str, Path]:
    mark = uuid.uuid4().hex
    temp = Path(tempfile.mkdtemp(dir="/tmp"))   # short enough for the server's socket
    done = subprocess.run(
        [sys.executable, "-m", "armdata.cli", "build", "--config", "armdata_demo", "--source",
         str(source), "--output", str(out), "--direct_running_mode=multi_processing",
         "--direct_num_workers=2", "--verbose", *extra],
        cwd=REPO, env={**os.environ, "ARMDATA_TEST_MARK": mark, "TMPDIR": str(temp), **env},
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, mark, temp


def still_running(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("ARMDATA_TEST_MARK") == mark:
                found.append(proc)
        except psutil.Error:
            pass
    return found


def digests(out) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((out / "data").iterdir())}


@pytest.mark.e2e
def test_forked_workers_build_the_same_dataset_and_leave_nothing_running(tmp_path):
    source = write_synthetic_rlds(tmp_path / "src", num_episodes=6, num_steps=4,
                                  image_size=(16, 16), seed=3, num_shards=3)
    forked, mark, temp = run_build(source, tmp_path / "forked", tmp_path)
    assert "workers are forked from the worker server" in forked.stderr
    started, _, _ = run_build(source, tmp_path / "started", tmp_path,
                              ARMDATA_FORKED_WORKERS="0")
    assert "workers are forked" not in started.stderr
    assert "ARMDATA_FORKED_WORKERS=0" in started.stderr
    assert digests(tmp_path / "forked") == digests(tmp_path / "started")
    manifests = [json.loads((tmp_path / d / "manifest.json").read_text())["counts"]
                 for d in ("forked", "started")]
    assert manifests[0] == manifests[1] and manifests[0]["episodes_out"] == 6
    deadline = time.monotonic() + 10   # the server and its workers end with the launcher
    while still_running(mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not still_running(mark)
    assert not list(temp.iterdir())   # the server's socket folder is removed
    temp.rmdir()


def test_socket_goes_to_tmp_where_the_temporary_directory_is_too_long(tmp_path, monkeypatch):
    long = tmp_path / ("x" * 80)
    long.mkdir()
    monkeypatch.setattr(workers.tempfile, "tempdir", str(long))
    listener = workers.listen()
    try:
        path = listener.getsockname()
        assert path.startswith("/tmp/armdata-workers-") and path.endswith("/server.sock")
        assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
    finally:
        listener.close()
        workers.remove_socket(path)
    assert not os.path.exists(os.path.dirname(path))


def test_launcher_does_not_fork_where_it_is_unsafe(monkeypatch):
    monkeypatch.delenv(workers.DISABLE_ENV, raising=False)
    monkeypatch.setattr(workers.sys, "platform", "linux")
    monkeypatch.setattr(workers.threading, "active_count", lambda: 1)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert workers.why_not_fork() is None
    monkeypatch.setitem(sys.modules, "torch", object())
    assert workers.why_not_fork() == "torch is imported"
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setattr(workers.threading, "active_count", lambda: 3)
    assert workers.why_not_fork() == "2 other threads are running"
    monkeypatch.setattr(workers.threading, "active_count", lambda: 1)
    monkeypatch.setattr(workers.sys, "platform", "darwin")
    assert workers.why_not_fork() == "not on Linux (darwin)"
    monkeypatch.setattr(workers.sys, "platform", "linux")
    monkeypatch.setenv(workers.DISABLE_ENV, "0")
    assert workers.why_not_fork() == "ARMDATA_FORKED_WORKERS=0"


def test_in_process_builds_fork_nothing():
    from armdata.commands.build.runner import beam_options, forked_workers as fork_for, \
        make_runner

    options = beam_options([], in_process=True)
    runner = make_runner(options)
    with fork_for(runner, options):
        assert runner.worker_command.endswith("-m armdata.beam_worker")
        assert workers.SOCKET_ENV not in os.environ


@pytest.mark.parametrize("reply", [b"3\n", b""])
def test_client_exits_with_the_workers_status(tmp_path, monkeypatch, capsys, reply):
    """The client sends its whole environment and exits with the status the worker reports;
    a worker that ended without one (killed, crashed) is a failure, said in one line."""
    path = str(tmp_path / "s.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    got = {}

    def serve() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as f:
            got.update(json.loads(f.readline()))
            conn.sendall(reply)

    thread = threading.Thread(target=serve)
    thread.start()
    monkeypatch.setenv(worker_client.SOCKET_ENV, path)
    monkeypatch.setenv("CONTROL_API_SERVICE_DESCRIPTOR", "url: 'localhost:1'")
    assert worker_client.main() == (3 if reply else 1)
    thread.join()
    server.close()
    assert got["CONTROL_API_SERVICE_DESCRIPTOR"] == "url: 'localhost:1'"
    assert ("ended without a status" in capsys.readouterr().err) == (not reply)


def test_client_and_server_agree_on_the_socket_variable():
    assert worker_client.SOCKET_ENV == workers.SOCKET_ENV
