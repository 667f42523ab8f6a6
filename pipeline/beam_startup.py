"""Two of Beam's start-up costs that a build pays for nothing, removed without changing what
Beam computes. Both replace a function of Beam by one with the same answers; both are
idempotent and applied by `build_graph`.

- `skip_ipython_probe`: Beam asks `is_in_ipython()` for every transform applied and once more
  after running, which imports IPython where it is installed (0.3 s).
- `memoize_dofn_specs`: Beam looks for state and timer parameters in every method of a DoFn
  (`userstate.get_dofn_specs`, an `inspect.signature` per method) three to four times for the
  same DoFn object while building and translating the graph, and again per worker: 306 calls,
  0.27 s of a 4-second 100-episode actions build. The answer depends only on the object's
  methods, so it is kept per DoFn object (weakly referenced; an object that cannot be is
  inspected every time, as before).
"""
from __future__ import annotations

import sys
import weakref
from typing import Any


def skip_ipython_probe() -> None:
    """A process that has not imported IPython is not an IPython session: answer that without
    the import; otherwise ask Beam. (`apache_beam.pipeline` holds its own reference to the
    function.)"""
    from apache_beam import pipeline
    from apache_beam.utils import interactive_utils

    probe = interactive_utils.is_in_ipython
    if getattr(probe, "skips_import", False):
        return

    def is_in_ipython() -> bool:
        return "IPython" in sys.modules and probe()

    is_in_ipython.skips_import = True   # type: ignore[attr-defined]
    interactive_utils.is_in_ipython = pipeline.is_in_ipython = is_in_ipython


def memoize_dofn_specs() -> None:
    """`userstate.get_dofn_specs` computed once per DoFn object (see the module's docstring).
    Its callers (`is_stateful_dofn`, `validate_stateful_dofn`, ParDo's translation, the direct
    runner) look it up in the module, so replacing the module's function reaches them all."""
    from apache_beam.transforms import userstate

    inspect = userstate.get_dofn_specs
    if getattr(inspect, "memoized", False):
        return
    known: dict[int, tuple[weakref.ref, Any, Any]] = {}

    def get_dofn_specs(dofn: Any) -> tuple[set, set]:
        hit = known.get(id(dofn))
        if hit is None or hit[0]() is not dofn:
            states, timers = inspect(dofn)
            try:
                ref = weakref.ref(dofn, lambda _, key=id(dofn): known.pop(key, None))
            except TypeError:   # not weakly referenceable: no memo
                return states, timers
            hit = known[id(dofn)] = (ref, frozenset(states), frozenset(timers))
        return set(hit[1]), set(hit[2])   # fresh sets, as Beam's own returns

    get_dofn_specs.memoized = True   # type: ignore[attr-defined]
    userstate.get_dofn_specs = get_dofn_specs


def speed_up_beam() -> None:
    skip_ipython_probe()
    memoize_dofn_specs()
