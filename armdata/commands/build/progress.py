"""The progress bar of a local build."""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import tqdm

from armdata.pipeline import resume
from armdata.pipeline.sinks import storage


@contextlib.contextmanager
def progress(spill: str, episodes: int) -> Iterator[None]:
    """A progress bar for local builds: counts the episodes finished so far (reused included)."""
    if not storage.is_local(spill):
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        with tqdm.tqdm(total=episodes, unit="episode", desc="episodes through all stages",
                       mininterval=1.0) as bar:
            while True:   # one last count after the build: a fast build ends at N/N, not 0/N
                stopped = stop.wait(1.0)
                bar.update(resume.count_finished(spill) - bar.n)
                if stopped:
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
