"""`armdata build`: check everything that can be checked before any Beam work, run the graph into
a staging directory under the output's lock, publish it to the output only when the job succeeded
and its result passes the rejection threshold.

The parts: `options` (the command's options and stages), `checks` (everything before Beam work),
`runner` (Beam's options and the local runner), `progress`, `publish` (the last checks, the move
to the output, the summary) and `failure` (a build that is not published)."""
from __future__ import annotations

import argparse
import logging
import sys

import apache_beam as beam
from apache_beam.runners.runner import PipelineState

from armdata.commands.build.checks import prepare
from armdata.commands.build.failure import clean_up_failed, failed_dir
from armdata.commands.build.options import add_arguments
from armdata.commands.build.progress import progress
from armdata.commands.build.publish import publish, summary
from armdata.commands.build.runner import beam_options, forked_workers, make_runner, \
    runs_in_process
from armdata.pipeline import resume
from armdata.pipeline.graph import build_graph
from armdata.pipeline.identity import build_identity
from armdata.pipeline.sinks import storage
from armdata.pipeline.sinks.finalize import REJECTED_PATH

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "build", help="build a dataset from an RLDS source",
        description="Build sharded Parquet from an RLDS dataset. Unknown options are passed to "
                    "Beam (e.g. --runner DataflowRunner --project P --region R "
                    "--temp_location gs://... --setup_file ./setup.py).")
    add_arguments(p)
    p.set_defaults(func=run, accepts_beam_args=True)


def run(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    ready = prepare(args)
    output = storage.resolve(args.output)   # every alias of the folder: one lock, one target
    with storage.output_lock(output) as still_ours:
        work, key = resume.prepare_work_dir(output, ready["manifest"],
                                            build_identity(ready["plan"]), not args.no_resume,
                                            args.clean_stale)
        staging = storage.staging_dir(output)
        log.info("building %s episodes of %s into %s (staging %s, work %s)",
                 ready["plan"].num_episodes, ready["plan"].builder_name, args.output, staging, work)
        try:
            options = beam_options(beam_args or [], runs_in_process(ready["manifest"]))
            runner = make_runner(options)
            p = beam.Pipeline(runner=runner, options=options)
            build_graph(p, ready["plan"], ready["config"], ready["stages"], staging,
                        ready["stats"], args.num_shards, args.min_shards, ready["manifest"],
                        work, key)
            with forked_workers(runner, options), \
                    progress(resume.episodes_dir(work), ready["plan"].num_episodes):
                result = p.run()
                state = result.wait_until_finish()
            if state != PipelineState.DONE:
                raise RuntimeError(f"the Beam job ended in state {state}")
            manifest = publish(result, staging, output, args, still_ours)
        except BaseException as exc:
            clean_up_failed(exc, staging, work, args.output)
            raise
        storage.delete_tree(work)
    storage.delete_tree(failed_dir(output))   # an earlier failed attempt's report
    print(summary(manifest, args.output))
    unread = manifest["counts"]["episodes_unread"]
    if unread and args.strict:
        print(f"armdata: error: {unread} episodes of damaged source shards were not read (see "
              f"{storage.join(args.output, REJECTED_PATH)}); failing because of --strict",
              file=sys.stderr)
        return 1
    return 0
