"""What every pipeline stage is: a small class that turns one canonical episode into another.

A stage is plain Python (testable without Beam). `armdata.pipeline.graph` wraps each stage in one generic
DoFn that calls `setup()` once per worker, routes rejections to `rejected/` and turns the stage's
`counters` into Beam metrics. Stages must keep `__init__` cheap and picklable: models are loaded
in `setup()`, through `shared_model` so that threads of one worker share one copy.

A stage returns what is wrong with the data as rejections (or raises `DataError` for the whole
episode); any other exception is a bug or an infrastructure failure (out of memory, a missing
package) and fails the bundle, so that the runner retries it and the job stops if it persists.
"""
from __future__ import annotations

import abc
import collections
import logging
import threading
from typing import Any, Callable

from armdata.schemas.episode import Episode, Rejection

log = logging.getLogger(__name__)


class Stage(abc.ABC):
    name: str = "stage"
    # Episodes handed to `process_batch` at once (a stage whose model batches across episodes
    # sets this; memory then holds up to this many episodes).
    batch_episodes: int = 1
    # Whether the stage uses the config's depth camera (`Step.sensor_depth`); when no stage does,
    # the build does not read it.
    reads_sensor_depth: bool = False

    def __init__(self) -> None:
        self.counters: collections.Counter[str] = collections.Counter()

    def setup(self) -> None:
        """Load models / open resources. Called once per worker before the first episode."""

    @abc.abstractmethod
    def process(self, episode: Episode) -> tuple[Episode | None, list[Rejection]]:
        """Return the (possibly modified) episode, or None if the whole episode is rejected, plus
        the rejection records for everything dropped."""

    def options(self) -> dict[str, Any]:
        """How this stage is configured beyond the dataset config, for the manifest and the card:
        JSON-able and deterministic (no timestamps, no temporary paths), with the sha256 or Hub
        revision of every model or file it reads. Called once on the launcher before any Beam
        work, so it also checks those files: it raises ValueError/OSError naming the file."""
        return {}

    def models(self) -> dict[str, Any]:
        """The Hub models (id, or (repo id, file)) or model directories this stage will load, by
        the option that names them, for the build's one check of them all
        (`armdata.models.hub.check_models`) before `options`."""
        return {}

    # What the stage can do without network access, for the error when a model is missing.
    offline: str = ""

    def process_batch(self, episodes: list[Episode]
                      ) -> list[tuple[Episode | None, list[Rejection]]]:
        """`process` for several episodes; stages that batch across episodes override it."""
        return [self.process(e) for e in episodes]

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] += n


_models: dict[Any, Any] = {}
_models_lock = threading.Lock()


def shared_model(key: Any, load: Callable[[], Any]) -> Any:
    """Load a model once per process (keyed by everything that defines it) and share it."""
    with _models_lock:
        if key not in _models:
            log.info("loading model %s", key)
            _models[key] = load()
        return _models[key]
