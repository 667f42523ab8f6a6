"""Shared test helpers: where ../shared is, and running `armdata` commands in-process."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BRIDGE = SHARED / "data" / "bridge_debug" / "bridge_dataset" / "1.0.0"
# In-process Beam runner: the same graph as on a cluster, without worker start-up per test.
LOCAL_BEAM = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def armdata(*args: str) -> int:
    from armdata.cli import main

    return main([str(a) for a in args])


def build(*args: str) -> int:
    return armdata("build", *args, *LOCAL_BEAM)


def build_killed_while_writing(*args: str) -> int:
    """`build` sent SIGTERM while writing its shards (every episode finished in the work
    directory, nothing published); returns its exit code."""
    import os
    import signal

    from armdata.pipeline.sinks import writer

    write = writer.WriteShard.process

    def write_then_terminated(self, *a):
        yield from write(self, *a)
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(writer.WriteShard, "process", write_then_terminated)
        return build(*args)


def read_rows(output: Path) -> list[dict]:
    manifest = json.loads((output / "manifest.json").read_text())
    rows = []
    for shard in manifest["shards"]:
        rows += pq.read_table(output / shard["path"]).to_pylist()
    return rows


def rejected(output: Path) -> list[dict]:
    text = (output / "rejected" / "rejected.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="session")
def bridge_dir() -> Path:
    if not BRIDGE.exists():
        pytest.skip("../shared/data/bridge_debug is not present")
    return BRIDGE


# Tiny random models written once per test run; tests only read them (one that damages a model
# makes its own).
@pytest.fixture(scope="session")
def tiny_vqvae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from armdata.testing.tiny_models import make_tiny_vqvae

    return make_tiny_vqvae(tmp_path_factory.mktemp("tiny_vqvae") / "vqvae.pt")


@pytest.fixture(scope="session")
def tiny_depth_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from armdata.testing.tiny_models import make_tiny_depth_model

    return make_tiny_depth_model(tmp_path_factory.mktemp("tiny_depth") / "depth_model")


def pytest_configure(config: pytest.Config) -> None:
    # One torch (OpenMP) thread per process, subprocesses included, before anything imports
    # torch: the tests' models are tiny, and on a busy 2-core machine a second thread costs more
    # (waking, spinning) than it gives (the VQ-VAE training test: 28 CPU s with one thread, 95 with
    # two); it also makes a test's speed independent of which test ran before it. Under
    # pytest-xdist each worker keeps to its core. An OMP_NUM_THREADS set by the caller wins.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# Tier of whole test files; any test without a tier marker is `quick`.
FILE_TIERS = {
    "e2e": {"test_build_bad_input", "test_build_bridge", "test_build_stages", "test_damaged_source",
            "test_demo_output", "test_bad_arguments", "test_quiet_output",
            "test_errors", "test_export", "test_lerobot_source", "test_motion",
            "test_portable_runner", "test_push", "test_reasoning_stage", "test_resume",
            "test_safety", "test_train_vqvae", "test_trainer"},
    "interop": {"test_rlds_features", "test_lerobot_interop"},
}
TIERS = ("quick", "e2e", "interop", "slow")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.stem
        for tier, modules in FILE_TIERS.items():
            if module in modules:
                item.add_marker(tier)
        if not any(item.get_closest_marker(t) for t in TIERS):
            item.add_marker("quick")
