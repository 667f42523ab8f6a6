"""`pipeline/identity.py`: the source identity that resumed work is keyed on changes whenever the
planned source's metadata or data files change at the same path, and only then."""
from __future__ import annotations

import json
import os

from armdata.pipeline.identity import code_identity, source_identity
from armdata.pipeline.sources.lerobot import plan_lerobot
from armdata.pipeline.sources.rlds import plan_source
from armdata.testing.synthetic import write_synthetic_rlds
from armdata.testing import lerobot_data


def touched(path, delta_ns: int = 10**9) -> None:
    """Same size and content, a later modification time (a rewrite in place)."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + delta_ns))


def test_tfds_source_identity(tmp_path):
    src = write_synthetic_rlds(tmp_path, num_episodes=2, num_steps=2, image_size=(8, 8), seed=1)
    plan = plan_source(str(src), "train", None)
    first = source_identity(plan)
    assert source_identity(plan_source(str(src), "train", None)) == first      # stable
    (src / "unrelated.txt").write_text("x")                            # not planned: no change
    assert source_identity(plan) == first
    (shard,) = {r.filename for r in plan.reads}
    touched(shard)
    second = source_identity(plan)
    assert second != first
    info = json.loads((src / "dataset_info.json").read_text())
    (src / "dataset_info.json").write_text(json.dumps({**info, "description": "other"}))
    assert source_identity(plan) not in (first, second)


def test_lerobot_source_identity(tmp_path):
    root = lerobot_data.write_v21(tmp_path / "ds", [3, 2])
    plan = plan_lerobot(str(root), "train", None)
    first = source_identity(plan)
    touched(root / "meta" / "info.json")           # metadata: by content, not time
    assert source_identity(plan) == first
    with open(root / "meta" / "tasks.jsonl", "a") as f:
        f.write("\n")
    second = source_identity(plan)
    assert second != first
    touched(root / plan.episodes[0].data_file)
    assert source_identity(plan) not in (first, second)


def test_code_identity_changes_with_any_package_file(tmp_path):
    (tmp_path / "pipeline").mkdir()
    module = tmp_path / "pipeline" / "a.py"
    module.write_text("X = 1\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("")
    first = code_identity(tmp_path)
    assert len(first) == 64 and code_identity(tmp_path) == first
    code_identity.cache_clear()
    (tmp_path / "tests" / "t.py").write_text("Y = 2\n")         # not a package: no change
    assert code_identity(tmp_path) == first
    code_identity.cache_clear()
    module.write_text("X = 2\n")
    assert code_identity(tmp_path) != first
    assert code_identity() != first                                 # the real package
