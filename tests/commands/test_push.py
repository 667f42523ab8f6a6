"""`armdata push` against a local Hub stand-in (tests/commands/fake_hub.py): refuses incomplete or corrupt
builds, uploads every byte of the build plus the card, resumes after a failed commit without
re-sending bytes, keeps the token out of logs; the shards load with `datasets` as images."""
from __future__ import annotations

import json
import logging
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import armdata, build
from tests.commands.fake_hub import FakeHub

TOKEN = "hf_test_secret_token_123"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, bridge_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("push") / "built"
    assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", out,
                 "--max-episodes", 4, "--num-shards", 2) == 0
    return out


@pytest.fixture()
def hub(monkeypatch: pytest.MonkeyPatch):
    import huggingface_hub.constants as constants

    with FakeHub(TOKEN) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        # huggingface_hub reads these when it is imported (already done by transformers)
        monkeypatch.setattr(constants, "ENDPOINT", fake.url)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        yield fake


def local_files(built: Path) -> dict[str, bytes]:
    return {str(p.relative_to(built)): p.read_bytes() for p in built.rglob("*") if p.is_file()}


def test_push_uploads_every_byte_and_resumes(built: Path, hub: FakeHub,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    hub.fail_next_commit = True                      # first attempt dies before the commit
    assert armdata("push", built, "--repo", "org/bridge", "--license", "mit") == 2
    uploaded_once = [c for c in hub.calls if c[0] == "PUT"]
    assert len(uploaded_once) == 2 and not hub.repos["org/bridge"].commits

    assert armdata("push", built, "--repo", "org/bridge", "--license", "mit") == 0
    assert [c for c in hub.calls if c[0] == "PUT"] == uploaded_once   # LFS bytes not re-sent
    repo = hub.repos["org/bridge"]
    files = repo.branches["main"]
    local = local_files(built)
    assert set(files) == set(local)
    for path, content in local.items():
        if path != "README.md":
            assert files[path] == content, path
    assert repo.lfs_paths == {p for p in local if p.endswith(".parquet")}
    card = files["README.md"].decode()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["license"] == "mit" and front["task_categories"] == ["robotics"]
    assert front["configs"][0]["data_files"] == [{"split": "train",
                                                  "path": "data/train-*.parquet"}]
    assert front["pretty_name"]
    assert card.split("---\n", 2)[2] == local["README.md"].decode().split("---\n", 2)[2]

    # A rerun with nothing changed sends no bytes and makes no commit.
    calls = len(hub.calls)
    assert armdata("push", built, "--repo", "org/bridge", "--license", "mit") == 0
    assert not [c for c in hub.calls[calls:] if c[0] == "PUT" or c[1].endswith("/commit/main")]
    assert len(repo.commits) == 1
    assert TOKEN not in caplog.text


def test_push_branch_private_and_stale_shards(built: Path, hub: FakeHub, tmp_path: Path) -> None:
    assert armdata("push", built, "--repo", "org/b2", "--private", "--revision", "v1") == 0
    repo = hub.repos["org/b2"]
    assert repo.private and repo.branches["main"] == {}
    assert set(repo.branches["v1"]) == set(local_files(built))
    # An earlier build's extra shard is removed by the next push.
    repo.branches["v1"]["data/train-00009-of-00010.parquet"] = b"stale"
    assert armdata("push", built, "--repo", "org/b2", "--revision", "v1") == 0
    assert "data/train-00009-of-00010.parquet" not in repo.branches["v1"]


def test_push_refuses_incomplete_or_corrupt(built: Path, hub: FakeHub, tmp_path: Path,
                                            capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    shard = copy / json.loads((copy / "manifest.json").read_text())["shards"][1]["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1
    shard.write_bytes(bytes(data))
    assert armdata("push", copy, "--repo", "org/x") == 2
    err = capsys.readouterr().err
    assert "sha256" in err and shard.name in err
    shard.unlink()
    assert armdata("push", copy, "--repo", "org/x") == 2
    assert "missing" in capsys.readouterr().err
    (copy / "manifest.json").unlink()
    assert armdata("push", copy, "--repo", "org/x") == 2
    assert "no manifest.json" in capsys.readouterr().err
    monkeypatch.delenv("HF_TOKEN")
    assert armdata("push", built, "--repo", "org/x") == 2
    assert "HF_TOKEN" in capsys.readouterr().err
    assert "org/x" not in hub.repos and not hub.calls


def test_shards_load_with_datasets_as_images(built: Path, tmp_path: Path) -> None:
    import datasets
    from PIL import Image

    ds = datasets.load_dataset("parquet", data_files=str(built / "data" / "train-*.parquet"),
                               split="train", cache_dir=str(tmp_path / "cache"))
    assert isinstance(ds.features["image"], datasets.Image)
    assert isinstance(ds.features["depth_png"], datasets.Image)
    row = ds[0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (
        row["image_width"], row["image_height"])
    assert row["wrist_image"] is None and isinstance(row["action_tokens"], str)
    assert len(ds) == json.loads((built / "manifest.json").read_text())["counts"]["steps_out"]


# --- issue 17: push checks every listed file, refuses paths outside the build, one line per Hub
# error -------------------------------------------------------------------------------------------

def edit_stats(copy: Path) -> None:
    stats = copy / "dataset_statistics.json"
    stats.write_text(stats.read_text().replace("0", "1", 1))


def edit_rejected(copy: Path) -> None:
    (copy / "rejected" / "rejected.jsonl").write_text('{"forged": true}\n')


def edit_card(copy: Path) -> None:
    (copy / "README.md").write_text("# hijacked card\n")


def add_extra(copy: Path) -> None:
    (copy / "data" / "extra.parquet").write_bytes(b"not ours")


def link_stats(copy: Path) -> None:
    stats = copy / "dataset_statistics.json"
    outside = copy.parent / "stats-elsewhere.json"
    stats.rename(outside)
    stats.symlink_to(outside)     # same bytes, but a link: never followed


@pytest.mark.parametrize("damage, named", [
    (edit_stats, "dataset_statistics.json does not match the sha256"),
    (edit_rejected, "rejected/rejected.jsonl does not match the sha256"),
    (edit_card, "README.md does not match the sha256"),
    (add_extra, "data/extra.parquet is not listed in manifest.json"),
    (link_stats, "dataset_statistics.json is a symlink"),
])
def test_push_refuses_edited_unlisted_or_linked_files(built: Path, hub: FakeHub, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture,
                                                      damage, named: str) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    damage(copy)
    assert armdata("push", copy, "--repo", "org/x") == 2
    err = capsys.readouterr().err
    assert named in err and len(err.strip().splitlines()) == 1, err
    assert not hub.calls


@pytest.mark.parametrize("where", ["../outside.parquet", "ABSOLUTE"])
def test_push_refuses_a_manifest_path_outside_the_build(built: Path, hub: FakeHub, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        where: str) -> None:
    """A crafted manifest once made push create a symlink outside its temporary folder."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    shard = manifest["shards"][0]["path"]
    crafted = str(tmp_path / "elsewhere.parquet") if where == "ABSOLUTE" else where
    shutil.copy(copy / shard, copy / crafted)    # the same bytes, outside the build
    manifest["shards"][0]["path"] = crafted
    for entry in manifest.get("files", []):
        if entry["path"] == shard:
            entry["path"] = crafted
    (copy / shard).unlink()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert armdata("push", copy, "--repo", "org/x") == 2
    err = capsys.readouterr().err
    assert repr(crafted) in err and ("absolute" in err or "'..'" in err), err
    escaped = [p for p in tmp_path.rglob("*") if p.is_symlink()]
    assert not escaped and not hub.calls


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("failure, expected", [
    ("401", "answered 401"), ("404", "answered 404"), ("503", "answered 503"),
    ("unreachable", "cannot reach the Hub"), ("no scheme", "not an http:// or https:// URL")])
def test_every_hub_error_is_one_line(built: Path, hub: FakeHub, capsys: pytest.CaptureFixture,
                                     monkeypatch: pytest.MonkeyPatch, failure: str,
                                     expected: str) -> None:
    import huggingface_hub.constants as constants

    if failure == "401":
        monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_456")
    elif failure in ("404", "503"):
        hub.force_status = int(failure)
    else:
        endpoint = f"http://127.0.0.1:{closed_port()}" if failure == "unreachable" \
            else hub.url.split("://")[1]
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    start = time.monotonic()
    assert armdata("push", built, "--repo", "org/x") == 2
    assert time.monotonic() - start < 10      # no retry loop against a dead endpoint
    err = capsys.readouterr().err
    assert err.startswith("armdata push: error: ") and len(err.strip().splitlines()) == 1, err
    assert expected in err and TOKEN not in err and "hf_wrong_token" not in err


def test_card_license_size_and_language(built: Path, hub: FakeHub,
                                        capsys: pytest.CaptureFixture) -> None:
    assert armdata("push", built, "--repo", "org/lic", "--license", "cc-by-4") == 2
    assert "not a Hub license id" in capsys.readouterr().err and not hub.calls   # nothing sent
    assert armdata("push", built, "--repo", "org/lic") == 0       # the config's CC-BY-4.0
    files = hub.repos["org/lic"].branches["main"]
    front = yaml.safe_load(files["README.md"].decode().split("---\n")[1])
    assert front["license"] == "cc-by-4.0" and "license_name" not in front
    assert front["language"] == ["en"] and front["size_categories"] == ["n<1K"]
    assert "LICENSE.md" not in files
    assert armdata("push", built, "--repo", "org/lic", "--license", "other") == 0
    files = hub.repos["org/lic"].branches["main"]
    front = yaml.safe_load(files["README.md"].decode().split("---\n")[1])
    assert front["license"] == "other" and front["license_link"] == "LICENSE.md"
    assert front["license_name"] == "bridge-dataset-source-license"
    assert "CC-BY-4.0" in files["LICENSE.md"].decode()


def test_push_lerobot_export_tags_codebase_version(built: Path, hub: FakeHub,
                                                   tmp_path: Path) -> None:
    export = tmp_path / "lerobot"
    assert armdata("export", built, "--format", "lerobot", "--out", export) == 0
    assert armdata("push", export, "--repo", "org/lr") == 0
    repo = hub.repos["org/lr"]
    assert repo.branches["main"] == local_files(export)           # as exported, card included
    assert repo.tags == {"v3.0": repo.commits[-1]}
    front = yaml.safe_load(repo.branches["main"]["README.md"].decode().split("---\n")[1])
    assert front["license"] == "cc-by-4.0" and "LeRobot" in front["tags"]
    assert armdata("push", export, "--repo", "org/lr") == 0       # rerun: the tag exists, fine
