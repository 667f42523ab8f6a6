"""Beam options pass through; only DirectRunner is replaced by the in-process portable runner."""
from __future__ import annotations

import importlib.util

import pytest
from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, \
    SetupOptions, StandardOptions

from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

from armdata.commands.build.options import parse_stages
from armdata.commands.build.progress import progress
from armdata.commands.build.publish import summary
from armdata.commands.build.runner import IN_PROCESS_MAX_EPISODES, beam_options, make_runner, \
    runs_in_process
from armdata.wording import count


def test_dataflow_arguments_pass_through():
    opts = beam_options(["--runner", "DataflowRunner", "--project", "p", "--region", "r",
                         "--temp_location", "gs://b/tmp", "--setup_file", "./setup.py"])
    assert opts.view_as(StandardOptions).runner == "DataflowRunner"
    gcp = opts.view_as(GoogleCloudOptions)
    assert (gcp.project, gcp.region, gcp.temp_location) == ("p", "r", "gs://b/tmp")
    assert opts.view_as(SetupOptions).setup_file == "./setup.py"
    assert make_runner(opts) is None          # Beam builds the named runner itself


def test_local_default_is_multiprocessing_on_all_cores():
    opts = beam_options([])
    direct = opts.view_as(DirectOptions)
    assert opts.view_as(StandardOptions).runner == "DirectRunner"
    assert direct.direct_running_mode == "multi_processing" and direct.direct_num_workers >= 1
    assert isinstance(make_runner(opts), FnApiRunner)
    kept = beam_options(["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert kept.view_as(DirectOptions).direct_running_mode == "in_memory"


def test_small_actions_build_runs_in_process_unless_beam_options_say_otherwise():
    def manifest(stages: list[str], episodes: int) -> dict:
        return {"stages": stages, "source": {"episodes_planned": episodes}}

    assert runs_in_process(manifest(["actions"], IN_PROCESS_MAX_EPISODES))
    assert not runs_in_process(manifest(["actions"], IN_PROCESS_MAX_EPISODES + 1))
    assert not runs_in_process(manifest(["actions", "depth"], 1))   # model stages: not measured

    def direct(args: list[str]) -> tuple[str, int]:
        d = beam_options(args, in_process=True).view_as(DirectOptions)
        return d.direct_running_mode, d.direct_num_workers

    assert direct([]) == ("in_memory", 1)
    assert isinstance(make_runner(beam_options([], in_process=True)), FnApiRunner)
    assert direct(["--direct_num_workers=2"]) == ("multi_processing", 2)
    assert direct(["--direct_running_mode=multi_processing"])[0] == "multi_processing"
    for runner in ("FlinkRunner", "PortableRunner"):   # other runners get what they got before
        other = beam_options([f"--runner={runner}"], in_process=True)
        assert make_runner(other) is None
        assert other.get_all_options() == beam_options([f"--runner={runner}"]).get_all_options()


def test_progress_bar_ends_at_the_finished_count(tmp_path, capsys):
    """A build faster than the bar's 1 s poll still leaves it at N/N, not 0/N."""
    with progress(str(tmp_path), 3):
        for i in range(3):
            (tmp_path / f"{i}.json").write_text("{}")
    assert "3/3" in capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]


def test_summary_counts_shards_in_the_right_number():
    manifest = {"counts": {"episodes_out": 1, "steps_out": 4, "episodes_rejected": 0,
                           "steps_rejected": 0}, "num_shards": 1}
    assert summary(manifest, "out").startswith(
        "published out: 1 episode, 4 steps in 1 shard; rejected 0 episodes, 0 steps (")
    assert [count(n, "shard") for n in (0, 1, 2)] == ["0 shards", "1 shard", "2 shards"]


def test_stages_are_ordered_and_checked():
    assert parse_stages("trace,actions,depth") == ["depth", "trace"]
    assert parse_stages("actions") == []


def test_build_command_line_starts_without_torch_or_tensorflow():
    """`armdata build` imports only its own subcommand: the launcher of an actions build never
    loads torch (seconds of start-up), and no launcher loads TensorFlow."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; from armdata.cli import make_parser; "
            "make_parser(['build', '--help']).parse_known_args(['build', '--config', 'x', "
            "'--source', 's', '--output', 'o']); "
            "print(sorted(m for m in ('torch', 'tensorflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_depth_camera_is_read_only_for_the_sensor_depth_stage():
    from armdata.pipeline.graph import config_as_read
    from armdata.schemas.config import load_config
    from armdata.transforms.depth import DepthStage
    from armdata.transforms.validate import ValidateStage

    config = load_config("armdata_demo")
    assert config.depth_key == "observation/depth"
    assert config_as_read(config, [ValidateStage(config)]).depth_key is None
    assert config_as_read(config, [DepthStage(source="model")]).depth_key is None
    assert config_as_read(config, [DepthStage(source="sensor")]) == config


@pytest.mark.e2e
def test_build_never_imports_ipython(tmp_path):
    """Beam probes for an IPython session on every transform and after the run; the probe
    imported IPython (0.3 s of an actions build's 4 s) wherever it is installed."""
    import subprocess
    import sys
    from pathlib import Path

    from armdata.testing.synthetic import write_synthetic_rlds

    if importlib.util.find_spec("IPython") is None:
        pytest.skip("IPython is not installed: nothing could import it")
    source = write_synthetic_rlds(tmp_path, num_episodes=2, num_steps=3, image_size=(16, 16),
                                  seed=0)
    argv = ["build", "--config", "armdata_demo", "--source", str(source), "--output",
            str(tmp_path / "out")]
    code = f"import sys; from armdata.cli import main; main({argv!r}); print(sorted(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and (tmp_path / "out" / "manifest.json").exists(), done.stderr
    assert "'IPython'" not in done.stdout
