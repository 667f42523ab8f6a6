"""Local Beam worker processes forked from the launcher instead of started from scratch.

With `--direct_running_mode=multi_processing` Beam starts each worker as a new interpreter, which
imports Beam, TensorFlow Datasets and armdata's stages again before its first bundle: about
1.5 s per worker on 2 cores, longer than a small build's whole work. Here the launcher, once it has
imported everything and built the graph, forks a *worker server*: a copy of itself, idle, with
no thread but its own. Beam's worker command line becomes `armdata.worker_client`, a
standard-library-only program that asks the server (over a Unix socket) to fork a worker with
Beam's environment variables, and that exits with the worker's status. The worker then runs
Beam's own harness (`sdk_worker_main`), as `armdata.beam_worker` would.

It is used only where forking is safe: Linux, the launcher has no other thread at that moment,
and it has not imported torch (whose OpenMP and CUDA state do not survive a fork). Anywhere
else, or with ARMDATA_FORKED_WORKERS=0, workers start as Beam starts them.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from typing import Iterator

log = logging.getLogger(__name__)

SOCKET_ENV = "ARMDATA_WORKER_SERVER"    # the server's socket path, read by the client
DISABLE_ENV = "ARMDATA_FORKED_WORKERS"  # "0": start workers as Beam does
MAX_SOCKET_PATH = 100                     # sun_path holds 108 bytes on Linux
STOP_AFTER = 10.0                         # seconds a worker may outlive its launcher's run


def why_not_fork() -> str | None:
    """None where forking the launcher is safe now, else the reason it is not."""
    if os.environ.get(DISABLE_ENV) == "0":
        return f"{DISABLE_ENV}=0"
    if not sys.platform.startswith("linux"):
        return f"not on Linux ({sys.platform})"
    if threading.active_count() > 1:
        return f"{threading.active_count() - 1} other threads are running"
    if "torch" in sys.modules:
        return "torch is imported"
    return None


@contextlib.contextmanager
def worker_server() -> Iterator[str | None]:
    """Fork the worker server for the duration of the block; yields the command line Beam runs
    for each worker, or None (with the reason logged) where workers start as Beam starts them."""
    reason = why_not_fork()
    listener = None if reason else listen()
    if listener is None:
        log.debug("local Beam workers start as new processes: %s",
                  reason or "no Unix socket path short enough")
        yield None
        return
    path = listener.getsockname()
    lifeline_r, lifeline_w = os.pipe()   # the server ends when the launcher closes (or dies)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError as exc:   # out of processes or memory: start workers as Beam does
        log.warning("could not fork the worker server (%s); workers start as new processes",
                    exc)
        for fd in (lifeline_r, lifeline_w):
            os.close(fd)
        listener.close()
        remove_socket(path)
        yield None
        return
    if pid == 0:   # the server: never returns
        os.close(lifeline_w)
        code = 1
        try:
            serve(listener, lifeline_r)
            code = 0
        finally:
            remove_socket(path)   # also when the launcher was killed
            os._exit(code)
    os.close(lifeline_r)
    listener.close()
    log.debug("local Beam workers are forked from the worker server (pid %d)", pid)
    previous = os.environ.get(SOCKET_ENV)
    os.environ[SOCKET_ENV] = path
    try:
        yield f"{sys.executable} -m armdata.worker_client"
    finally:
        if previous is None:
            os.environ.pop(SOCKET_ENV, None)
        else:
            os.environ[SOCKET_ENV] = previous
        os.close(lifeline_w)
        os.waitpid(pid, 0)
        remove_socket(path)


def listen() -> socket.socket | None:
    """A listening Unix socket in a new private folder (mode 0700: only this user can ask for
    a worker) under the temporary directory, or under /tmp where that path is too long for a
    socket (about 100 bytes); None where neither works."""
    for parent in dict.fromkeys([tempfile.gettempdir(), "/tmp"]):
        if len(os.path.join(parent, "armdata-workers-xxxxxxxx", "server.sock")) > MAX_SOCKET_PATH:
            continue
        folder = tempfile.mkdtemp(prefix="armdata-workers-", dir=parent)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(os.path.join(folder, "server.sock"))
            listener.listen(64)
            return listener
        except OSError:
            listener.close()
            shutil.rmtree(folder, ignore_errors=True)
    return None


def remove_socket(path: str) -> None:
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def serve(listener: socket.socket, lifeline: int) -> None:
    """Fork one worker per request until the launcher's end of `lifeline` closes, reaping them as
    they end (each reports its status to its client; reaping here also counts their CPU time in
    the launcher's). By then the runner has finished with its workers: any still running after
    STOP_AFTER seconds is killed, so that none outlives the build."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the launcher's to handle
    workers: set[int] = set()
    while True:
        ready, _, _ = select.select([listener, lifeline], [], [], 1.0)
        reap(workers)
        if lifeline in ready:
            break
        if listener in ready:
            conn, _ = listener.accept()
            pid = os.fork()
            if pid == 0:
                listener.close()
                os.close(lifeline)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                run_worker(conn)   # never returns
            workers.add(pid)
            conn.close()
    deadline = time.monotonic() + STOP_AFTER
    while workers and time.monotonic() < deadline:
        time.sleep(0.05)
        reap(workers)
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def reap(workers: set[int]) -> None:
    """Remove the workers that have ended from `workers`, collecting their exit."""
    for pid in list(workers):
        if os.waitpid(pid, os.WNOHANG)[0]:
            workers.discard(pid)


def run_worker(conn: socket.socket) -> None:
    """A forked worker: Beam's harness with the client's environment (Beam's worker settings
    are environment variables, `SubprocessSdkWorker.run`); its status goes back to the client.
    If the client goes away (Beam killed it), the worker ends too."""
    code = 1
    try:
        with conn.makefile("rb") as f:
            env = json.loads(f.readline())
        os.environ.clear()
        os.environ.update(env)

        def watch() -> None:   # the client sends nothing more: EOF means it is gone
            conn.recv(1)
            os._exit(1)

        threading.Thread(target=watch, name="client-watch", daemon=True).start()
        from armdata.beam_worker import run_harness

        run_harness()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        logging.getLogger(__name__).exception("forked Beam worker failed")
    finally:
        with contextlib.suppress(OSError):
            conn.sendall(f"{code}\n".encode())
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
