"""Beam's side of a build: its pass-through options and the local runner."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.portability import python_urns
from apache_beam.runners.portability.fn_api_runner import fn_runner

from armdata.commands.build.workers import worker_server

# A local actions-only build of at most this many episodes runs in the launcher's process unless
# Beam options say otherwise (`runs_in_process`); measured on 2 cores, see README "Benchmarks".
IN_PROCESS_MAX_EPISODES = 150


def unknown_beam_args(beam_args: list[str]) -> tuple[list[str], list[str]]:
    """(the arguments no Beam PipelineOptions class knows, every Beam option name)."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    classes = {str(cls): cls for cls in PipelineOptions.__subclasses__()}
    for cls in classes.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(beam_args)
    return unknown, sorted(parser._option_string_actions)


def runs_in_process(manifest: dict[str, Any]) -> bool:
    """Whether a local build without Beam worker options runs in the launcher's process: an
    actions-only build of at most IN_PROCESS_MAX_EPISODES planned episodes, for which starting
    worker processes costs more than they save (README "Benchmarks")."""
    return (manifest["stages"] == ["actions"]
            and manifest["source"]["episodes_planned"] <= IN_PROCESS_MAX_EPISODES)


def beam_options(beam_args: list[str], in_process: bool = False) -> PipelineOptions:
    """Beam options from the pass-through arguments; locally: DirectRunner semantics on all cores,
    or with `in_process` (DirectRunner only) in this process alone, unless the arguments name
    either."""
    args = list(beam_args)
    if not any(a.startswith("--runner") for a in args):
        args.append("--runner=DirectRunner")
    named = any(a.startswith(("--direct_running_mode", "--direct_num_workers")) for a in args)
    direct = PipelineOptions(args).view_as(StandardOptions).runner == "DirectRunner"
    mode, workers = (("in_memory", 1) if in_process and direct and not named
                     else ("multi_processing", os.cpu_count() or 1))
    if not any(a.startswith("--direct_running_mode") for a in args):
        args.append(f"--direct_running_mode={mode}")
    if not any(a.startswith("--direct_num_workers") for a in args):
        args.append(f"--direct_num_workers={workers}")
    return PipelineOptions(args)


def make_runner(options: PipelineOptions) -> Any:
    """For DirectRunner, run Beam's portable in-process runner (FnApiRunner) directly, which is
    what DirectRunner picks for batch jobs after first trying to download the Prism binary —
    a download that offline machines cannot make. Any other runner is used as named."""
    runner = options.view_as(StandardOptions).runner
    if runner not in (None, "DirectRunner"):
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return LocalRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


class LocalRunner(fn_runner.FnApiRunner):
    """FnApiRunner whose worker processes start through `worker_command`: by default
    `armdata.beam_worker`, which sets up armdata's logging before Beam's worker logs anything
    (see `armdata.logs`); during `forked_workers`, the worker server's client."""

    worker_command = f"{sys.executable} -m armdata.beam_worker"

    def run_via_runner_api(self, pipeline_proto: Any, options: PipelineOptions) -> Any:
        for env in pipeline_proto.components.environments.values():
            if env.urn == python_urns.SUBPROCESS_SDK:
                env.payload = self.worker_command.encode()
        return super().run_via_runner_api(pipeline_proto, options)


@contextlib.contextmanager
def forked_workers(runner: Any, options: PipelineOptions) -> Iterator[None]:
    """Local worker processes forked from this one (`forked_workers.worker_server`) while the
    block runs, where the runner is local and starts worker processes."""
    if not isinstance(runner, LocalRunner) or \
            options.view_as(DirectOptions).direct_running_mode != "multi_processing":
        yield
        return
    with worker_server() as command:
        if command:
            runner.worker_command = command
        try:
            yield
        finally:
            runner.__dict__.pop("worker_command", None)
