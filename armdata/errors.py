"""The two ways a command fails on purpose. Anything else is a bug and shows its traceback."""
from __future__ import annotations

from typing import Iterator


class UsageError(ValueError):
    """A problem the user can fix — a wrong path, an unreadable file, a bad option. `armdata`
    prints one line naming the file and the problem and exits 2 (the traceback only with
    --debug)."""


class BuildError(UsageError):
    """A problem with the arguments or a built dataset, found before any work starts."""


class BuildFailed(RuntimeError):
    """The job ran but its result must not be published (too many rejections, no row written).
    One line, exit 1."""


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from or while handling (Beam re-raises a worker's
    exception as another one; HTTP clients wrap the socket error several times)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
