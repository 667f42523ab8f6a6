"""Entry point of the local Beam worker processes (`--direct_running_mode=multi_processing`):
Beam's own worker, with armdata's logging set up first so that library chatter and per-slice
progress stay quiet unless the launcher was run with --verbose (see `armdata.logs`). Workers
forked by the launcher's worker server (`armdata.commands.build.workers`) run the same
`run_harness`."""
from __future__ import annotations

import logging
import sys

from armdata import logs


def run_harness() -> None:
    """Beam's SDK harness, configured by the environment variables Beam sets for a worker;
    returns when the runner has finished with this worker."""
    # Per-slice progress is the launcher's progress bar; workers only report problems.
    logs.configure(logs.is_verbose(), level=logging.WARNING)
    if not logs.is_verbose() and not isinstance(sys.stderr, logs.CutTracebacks):
        sys.stderr = logs.CutTracebacks(sys.stderr)
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


if __name__ == "__main__":
    run_harness()
    logs.exit_now(0)   # the harness has finished and flushed every bundle
