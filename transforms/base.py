"""What every pipeline stage is: a small class that turns one canonical episode into another.

A stage is plain Python (testable without Beam). `pipeline.graph` wraps each stage in one generic
DoFn that calls `setup()` once per worker, routes rejections to `rejected/` and turns the stage's
`counters` into Beam metrics. Stages must keep `__init__` cheap and picklable: models are loaded
in `setup()`, through `shared_model` so that threads of one worker share one copy.
"""
from __future__ import annotations

import abc
import collections
import logging
import threading
from typing import Any, Callable

from schemas.episode import Episode, Rejection

log = logging.getLogger(__name__)


class Stage(abc.ABC):
    name: str = "stage"
    # Episodes handed to `process_batch` at once (a stage whose model batches across episodes
    # sets this; memory then holds up to this many episodes).
    batch_episodes: int = 1

    def __init__(self) -> None:
        self.counters: collections.Counter[str] = collections.Counter()

    def setup(self) -> None:
        """Load models / open resources. Called once per worker before the first episode."""

    @abc.abstractmethod
    def process(self, episode: Episode) -> tuple[Episode | None, list[Rejection]]:
        """Return the (possibly modified) episode, or None if the whole episode is rejected, plus
        the rejection records for everything dropped."""

    def process_batch(self, episodes: list[Episode]
                      ) -> list[tuple[Episode | None, list[Rejection]]]:
        """`process` for several episodes; stages that batch across episodes override it."""
        return [self.process(e) for e in episodes]

    def describe(self) -> dict[str, Any] | None:
        """What the manifest should record about this stage (models, revisions, prompts)."""
        return None

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
