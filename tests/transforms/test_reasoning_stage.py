"""The reasoning stage end to end: tiny random models (built from configs, saved as model
directories) for caption, objects and plan through `armdata build`, byte-identical rebuilds, the
planner endpoint against a local HTTP server, and bad input."""
from __future__ import annotations

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from armdata.schemas.columns import normalize_point, parse_objects
from armdata.models.planner import EndpointClient, EndpointError
from armdata.schemas.episode import Episode, Step, encode_jpeg
from tests.conftest import armdata, build, read_rows
from armdata.testing.tiny_reasoning import save_tiny_chat_vlm, save_tiny_detector
from armdata.transforms.plan import TAGS
from armdata.transforms.reasoning import ReasoningStage

EPISODES = "4"


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    return save_tiny_chat_vlm(root / "vlm"), save_tiny_detector(root / "detector")


def model_args(tiny_dirs, *extra):
    vlm, det = tiny_dirs
    return ["--stages", "actions,reasoning", "--captioner-model", vlm, "--objects-model", det,
            "--reasoning-device", "cpu", "--captioner-batch-size", "3",
            "--captioner-max-new-tokens", "8", "--planner-max-new-tokens", "16",
            "--objects-every", "2", *extra]


def model_build(bridge_dir, tiny_dirs, out):
    assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", out,
                 "--max-episodes", EPISODES, *model_args(tiny_dirs)) == 0
    return out


@pytest.fixture(scope="module")
def built(bridge_dir, tiny_dirs, tmp_path_factory):
    return model_build(bridge_dir, tiny_dirs, tmp_path_factory.mktemp("reasoning") / "a")


def test_every_part_on_every_row(built):
    rows = read_rows(built)
    assert len({r["episode_id"] for r in rows}) == int(EPISODES)
    for r in rows:
        for col in ("motion", "scene_caption", "plan", "subtask", "subtask_reason",
                    "move_reason", "reasoning", "objects"):
            assert r[col] is not None and r[col] != "", (col, r["step"])
        assert r["reasoning"].startswith(f"TASK: {r['instruction'].strip()} PLAN: 1. ")
        tags = [t for t in TAGS if f"{t}: " in r["reasoning"]]
        assert tags == [t for t in TAGS if t != "GRIPPER POSITION"]   # no trace stage ran
        assert f"MOVE: {r['motion']}" in r["reasoning"]
        assert json.loads(r["plan"]) and r["subtask"] in r["reasoning"]
        parse_objects(r["objects"])
    # objects: detected on every 2nd kept step, carried to the next
    by_ep: dict[str, list[dict]] = {}
    for r in rows:
        by_ep.setdefault(r["episode_id"], []).append(r)
    for ep_rows in by_ep.values():
        ep_rows.sort(key=lambda r: r["step"])
        assert all(ep_rows[p]["objects"] == ep_rows[p - 1]["objects"]
                   for p in range(1, len(ep_rows), 2))
        assert len({r["scene_caption"] for r in ep_rows}) == 1


def test_manifest_records_models_prompts_and_calls(built):
    manifest = json.loads((built / "manifest.json").read_text())
    details = manifest["stage_options"]["reasoning"]
    assert details["parts"] == ["motion", "caption", "objects", "plan"]
    assert re.fullmatch(r"[0-9a-f]{64}", details["captioner"]["config_sha256"])
    assert re.fullmatch(r"[0-9a-f]{64}", details["planner"]["prompt"]["sha256"])
    assert details["captioner"]["prompt"]["version"] == 1
    c = manifest["counters"]
    n = int(EPISODES)
    assert c["reasoning/caption_calls"] == n
    # random weights never write valid JSON: one call, one retry, then the counted fallback
    assert c["reasoning/plan_calls"] == 2 * n and c["reasoning/plan_retries"] == n
    assert c["reasoning/plan_fallback"] == n == c["reasoning/episodes_plan_fallback"]
    lengths: dict[str, int] = {}
    for r in read_rows(built):
        lengths[r["episode_id"]] = lengths.get(r["episode_id"], 0) + 1
    assert c["reasoning/detector_frames"] == sum(-(-k // 2) for k in lengths.values())
    assert c["reasoning/caption_batches"] == 2        # 4 episodes in batches of 3


@pytest.mark.slow
def test_two_builds_byte_identical(built, bridge_dir, tiny_dirs, tmp_path):
    again = model_build(bridge_dir, tiny_dirs, tmp_path / "b")
    a, b = (json.loads((o / "manifest.json").read_text())["shards"] for o in (built, again))
    assert [s["sha256"] for s in a] == [s["sha256"] for s in b]


# --- planner endpoint ------------------------------------------------------------------------------

class PlannerServer:
    """A local OpenAI-compatible server: answers a valid plan built from the prompt, except the
    first answer for each episode is `first_answer` when set (to exercise the retry)."""

    def __init__(self, status: int = 200, first_answer: str | None = None) -> None:
        self.requests: list[dict] = []
        self.headers: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.headers.append(self.headers.get("Authorization"))
                if status != 200:
                    self.send_response(status)
                    self.end_headers()
                    return
                text = server.answer(body["messages"])
                data = json.dumps({"choices": [{"message": {"role": "assistant",
                                                            "content": text}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.first_answer = first_answer
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, messages: list[dict]) -> str:
        if self.first_answer is not None and len(messages) == 2:
            return self.first_answer
        prompt = messages[1]["content"]
        first, last = map(int, re.search(r"steps (\d+) to (\d+)", prompt).groups())
        n_runs = int(re.search(r"exactly (\d+) strings", prompt).group(1))
        return json.dumps({"plan": ["reach", "finish"],
                           "subtasks": [{"start": first, "end": first, "plan_step": 0,
                                         "subtask": "reach it", "reason": "it is there"},
                                        {"start": first + 1, "end": last, "plan_step": 1,
                                         "subtask": "finish it", "reason": "task"}],
                           "move_reasons": [f"reason {k}" for k in range(n_runs)]})

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


ENDPOINT_ARGS = ["--stages", "actions,reasoning", "--reasoning-parts", "motion,plan",
                 "--planner-model", "served-planner", "--planner-token-env", "TEST_PLANNER_TOKEN"]


def test_endpoint_plan_with_retry(bridge_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TEST_PLANNER_TOKEN", "s3cret-token")
    server = PlannerServer(first_answer='{"plan": ["only"]')        # truncated first answer
    try:
        out = tmp_path / "out"
        with caplog.at_level(logging.DEBUG):
            assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", out,
                         "--max-episodes", "3", "--planner-endpoint", server.url,
                         *ENDPOINT_ARGS) == 0
    finally:
        server.close()
    assert len(server.requests) == 6 and set(server.headers) == {"Bearer s3cret-token"}
    retries = [r["messages"] for r in server.requests if len(r["messages"]) == 4]
    assert len(retries) == 3 and all("not a JSON object" in m[3]["content"] for m in retries)
    assert server.requests[0]["temperature"] == 0 and server.requests[0]["model"] == \
        "served-planner"
    rows = read_rows(out)
    assert {r["subtask"] for r in rows} == {"reach it", "finish it"}
    assert all(r["move_reason"].startswith("reason ") for r in rows)
    manifest_text = (out / "manifest.json").read_text()
    assert "s3cret-token" not in manifest_text and "s3cret-token" not in caplog.text
    c = json.loads(manifest_text)["counters"]
    assert c["reasoning/episodes_plan_model"] == 3 and "reasoning/plan_fallback" not in c


def test_endpoint_down_is_a_counted_fallback(bridge_dir, tmp_path):
    server = PlannerServer(status=503)
    try:
        out = tmp_path / "out"
        assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", out,
                     "--max-episodes", "2", "--planner-endpoint", server.url,
                     "--planner-retries", "1", *ENDPOINT_ARGS) == 0
    finally:
        server.close()
    assert len(server.requests) == 4          # 2 episodes × (call + 1 retry)
    c = json.loads((out / "manifest.json").read_text())["counters"]
    assert c["reasoning/plan_fallback"] == 2 == c["reasoning/plan_endpoint_failed"]
    assert all(r["subtask"] and r["plan"] for r in read_rows(out))


def test_endpoint_client_retries_then_raises():
    server = PlannerServer(status=500)
    try:
        client = EndpointClient(server.url, "m", None, timeout=5, retries=2, backoff=0.01)
        with pytest.raises(EndpointError, match="HTTP 500"):
            client.chat([{"role": "user", "content": "x"}], 8)
        assert client.calls == 3 and server.headers == [None] * 3
    finally:
        server.close()
    with pytest.raises(EndpointError, match="URLError.*refused"):
        EndpointClient(server.url, "m", None, timeout=1, retries=0).chat([], 8)
    with pytest.raises(ValueError, match="http"):
        EndpointClient("ftp://x", "m")


# --- bad input -------------------------------------------------------------------------------------

def test_model_directory_missing_exits_2(bridge_dir, tmp_path, capsys):
    rc = build("--config", "bridge_dataset", "--source", bridge_dir, "--output", tmp_path / "o",
               "--stages", "actions,reasoning", "--reasoning-parts", "motion,caption",
               "--captioner-model", str(tmp_path / "no_such_model"))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "--captioner-model" in err and "no such model directory" in err
    assert not (tmp_path / "o").exists()


def test_bad_parts_exit_2(bridge_dir, tmp_path, capsys):
    assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", tmp_path / "o",
                 "--stages", "actions,reasoning", "--reasoning-parts", "objects") == 2
    assert "objects needs caption" in capsys.readouterr().err


def episode(n: int, state_dim: int, first_image: bytes | None = None) -> Episode:
    rng = np.random.default_rng(0)
    frame = encode_jpeg(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    steps = []
    for t in range(n):
        action = np.array([0, 0, 0.02, 0, 0, 0, 1.0 if t < 3 else 0.0], np.float32)
        steps.append(Step(index=t, image=frame, action=action,
                          state=np.zeros(state_dim, np.float32), instruction="lift the cup",
                          image_width=32, image_height=32))
    if first_image is not None:
        steps[0].image = first_image
    return Episode("toy", "toy/0", n, steps)


def test_episode_without_state_gets_motion_from_actions():
    stage = ReasoningStage(parts=("motion", "plan"), planner_endpoint="http://127.0.0.1:9",
                           planner_retries=0, planner_timeout=1)
    stage.setup()
    ep, rejections = stage.process(episode(6, state_dim=0))
    assert rejections == []
    assert [s.motion for s in ep.steps][:2] == ["move up, close gripper"] * 2
    assert stage.counters["motion_from_actions"] == 1
    assert stage.counters["plan_fallback"] == 1            # nothing listens on port 9
    assert [s.subtask for s in ep.steps] == ["approach the object"] * 3 + \
        ["grasp the object"] + ["move the object"] * 2


def test_missing_first_frame_captions_the_next(tiny_dirs):
    stage = ReasoningStage(parts=("motion", "caption"), captioner_model=str(tiny_dirs[0]),
                           captioner_max_new_tokens=4, device="cpu")
    stage.setup()
    eps, _ = zip(*stage.process_batch([episode(4, 7, first_image=b""), episode(4, 7)]))
    assert stage.counters["caption_frame_undecodable"] == 1
    assert stage.counters["caption_calls"] == 2 and stage.counters["caption_batches"] == 1
    assert all(s.scene_caption for e in eps for s in e.steps)


# --- ECoT export and preview of a reasoning build ---------------------------------------------------

@pytest.fixture(scope="module")
def bridge_ids(bridge_dir):
    import tensorflow_datasets as tfds

    ds = tfds.builder_from_directory(str(bridge_dir)).as_dataset(
        split=f"train[:{EPISODES}]", read_config=tfds.ReadConfig(add_tfds_id=True),
        decoders={"steps": tfds.decode.SkipDecoding()})
    return ["bridge_dataset/" + ep["tfds_id"].decode() for ep in tfds.as_numpy(ds)]


@pytest.fixture(scope="module")
def full(bridge_dir, tiny_dirs, bridge_ids, tmp_path_factory):
    """Trace + every reasoning part; the last episode gets no gripper point anywhere."""
    root = tmp_path_factory.mktemp("ecot")
    ids = bridge_ids
    points = {ids[e]: {str(e + 1): [40.0 + 9 * e, 30.0 + 5 * e]} for e in range(len(ids) - 1)}
    (root / "points.json").write_text(json.dumps(points))
    out = root / "out"
    args = model_args(tiny_dirs)
    args[1] = "actions,trace,reasoning"
    assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", out,
                 "--max-episodes", EPISODES, *args, "--localizer", "manual",
                 "--manual-points", root / "points.json", "--tracker", "lk",
                 "--trace-device", "cpu") == 0
    return out


def ecot_prompts(data: dict) -> dict[str, tuple[str, list]]:
    """ECoT's loading path, written from the facts of SPEC §9: key `file_path_episode_id_step`
    per reasoning entry (episodes without "reasoning" skipped), GRIPPER POSITION = this and the
    next 4 positions joined with `+=` (past the end: the last pair again), VISIBLE OBJECTS from
    `for prob, name, box`, the fields printed as they are (a null prints "None")."""
    out = {}
    for file_path, episodes in data.items():
        for episode_id, entry in episodes.items():
            if "reasoning" not in entry:
                continue
            features = entry["features"]
            for key, fields in entry["reasoning"].items():
                i, positions = int(key), []
                for j in range(5):
                    positions += (features["gripper_position"][i + j]
                                  if i + j < len(features["gripper_position"]) else positions[-2:])
                objects = ", ".join(f"{name} {box}" for prob, name, box in features["bboxes"][i])
                tags = [("TASK", fields["task"]), ("PLAN", fields["plan"]),
                        ("VISIBLE OBJECTS", objects),
                        ("SUBTASK REASONING", fields["subtask_reason"]),
                        ("SUBTASK", fields["subtask"]), ("MOVE REASONING", fields["move_reason"]),
                        ("MOVE", fields["move"]), ("GRIPPER POSITION", positions)]
                out[f"{file_path}_{episode_id}_{key}"] = (
                    " ".join(f"{t}: {v}" for t, v in tags), positions)
    return out


def test_export_ecot_reads_in_ecots_loader(full, tmp_path, capsys):
    rows = read_rows(full)
    assert armdata("export", full, "--format", "ecot", "--out", tmp_path / "ecot.json") == 0
    summary = json.loads(capsys.readouterr().out)
    data = json.loads((tmp_path / "ecot.json").read_text())
    prompts = ecot_prompts(data)
    kept = [r for r in rows if any(x["gripper_xy"] for x in rows
                                   if x["episode_id"] == r["episode_id"])]
    lengths = {r["episode_id"]: r["num_steps"] for r in kept}
    assert summary["episodes"] == len(lengths) == int(EPISODES) - 1
    assert summary["episodes_without_gripper_position"] == 1
    assert summary["steps"] == len(prompts) == sum(lengths.values())
    assert summary["steps_from_nearest_kept_step"] == sum(lengths.values()) - len(kept) > 0
    assert summary["missing_parts_written_empty"] == []
    for text, positions in prompts.values():
        assert "None" not in text and len(positions) == 10
        assert all(isinstance(v, int) and 0 <= v <= 255 for v in positions)
    for r in kept:
        meta = json.loads(r["episode_metadata"])
        entry = data[meta["file_path"]][str(int(meta["episode_id"]))]
        assert entry["metadata"]["n_steps"] == r["num_steps"]
        assert sorted(entry["reasoning"], key=int) == [str(i) for i in range(r["num_steps"])]
        text, positions = prompts[f"{meta['file_path']}_{int(meta['episode_id'])}_{r['step']}"]
        assert f"MOVE: {r['motion']} GRIPPER" in text and f"SUBTASK: {r['subtask']} " in text
        # indexed by source step: this step's own position, the one the build's text starts with
        own = re.search(r"GRIPPER POSITION: \[(\d+), (\d+)", r["reasoning"]).groups()
        assert positions[:2] == [int(v) for v in own]
        boxes = entry["features"]["bboxes"][r["step"]]
        assert [(name, tuple(box)) for _, name, box in boxes] == parse_objects(r["objects"])
        np.testing.assert_allclose([p for p, _, _ in boxes], r["object_scores"], atol=1e-4)
    assert armdata("export", full, "--format", "ecot", "--out", tmp_path / "ecot.json") == 2
    assert "exists" in capsys.readouterr().err


def test_export_ecot_refuses_gaps(bridge_dir, built, bridge_ids, tmp_path, capsys):
    assert armdata("export", built, "--format", "ecot", "--out", tmp_path / "a.json") == 2
    assert "--stages ...,trace" in capsys.readouterr().err
    motion_only = tmp_path / "motion"
    points = tmp_path / "points.json"
    points.write_text(json.dumps({bridge_ids[0]: {"3": [50.0, 40.0]}}))
    assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", motion_only,
                 "--max-episodes", "1", "--stages", "actions,trace,reasoning",
                 "--reasoning-parts", "motion", "--localizer", "manual", "--manual-points",
                 points, "--tracker", "none", "--trace-device", "cpu") == 0
    capsys.readouterr()
    assert armdata("export", motion_only, "--format", "ecot", "--out", tmp_path / "b.json") == 2
    err = capsys.readouterr().err.strip()
    assert "reasoning part(s) caption, objects, plan" in err and "\n" not in err
    assert not (tmp_path / "b.json").exists()
    assert armdata("export", motion_only, "--format", "ecot", "--out", tmp_path / "b.json",
                   "--allow-missing-parts") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["missing_parts_written_empty"] == ["caption", "objects", "plan"]
    assert summary["empty_plan"] == summary["empty_subtask"] == summary["steps"] > 0
    assert summary["gripper_position_from_another_step"] == summary["steps"] - 1
    prompts = ecot_prompts(json.loads((tmp_path / "b.json").read_text()))
    assert len(prompts) == summary["steps"]
    row = read_rows(motion_only)[0]
    seed = normalize_point(50.0, 40.0, row["image_width"], row["image_height"])
    for text, positions in prompts.values():
        assert "None" not in text and "PLAN:  VISIBLE OBJECTS:  SUBTASK" in text
        assert positions == seed * 5


def test_preview_shows_motion_subtask_objects(built, tmp_path):
    import argparse

    from PIL import Image

    from armdata.commands import preview

    episode_id = read_rows(built)[0]["episode_id"]
    parser = argparse.ArgumentParser()
    preview.register(parser.add_subparsers())
    args = parser.parse_args(["preview", str(built), "--episode", episode_id, "--out",
                              str(tmp_path), "--device", "cpu", "--height", "128"])
    assert args.func(args) == 0
    strip = np.asarray(Image.open(sorted(tmp_path.glob("*.png"))[0]))[preview.TITLE_HEIGHT:]
    assert strip.shape[0] == 128 + preview.GAP + 2 * preview.LINE_HEIGHT     # MOVE + SUBTASK
    boxes = (strip[:128] == preview.OBJECT_COLOR).all(axis=-1)
    assert boxes.sum() > 20                                                   # object outlines
    assert strip[128:].max() > 200                                            # text drawn
    row = {"motion": "move up", "subtask": None}
    assert preview.text_lines(row) == ["MOVE: move up"]


def test_text_only_planner_model(tmp_path):
    from armdata.testing.tiny_reasoning import save_tiny_text_llm

    llm = save_tiny_text_llm(tmp_path / "llm")
    stage = ReasoningStage(parts=("motion", "plan"), planner_model=str(llm),
                           planner_max_new_tokens=6, device="cpu")
    stage.setup()
    results = stage.process_batch([episode(5, 7), episode(4, 7)])
    c = stage.counters
    assert c["plan_calls"] == 4 and c["plan_batches"] == 2 and c["plan_fallback"] == 2
    assert all(s.subtask and s.reasoning.startswith("TASK: lift the cup PLAN: 1. ")
               for e, _ in results for s in e.steps)


def test_rules_planner_needs_no_model_and_is_counted_as_rules():
    stage = ReasoningStage(parts=("motion", "plan"), planner="rules",
                           planner_model="no/such-model-anywhere")
    assert stage.models() == {}                     # nothing for the up-front model check
    stage.setup()
    ep, rejections = stage.process(episode(6, state_dim=0))
    assert rejections == [] and stage._planner is None
    assert stage.counters["plan_rules"] == 1 and "plan_fallback" not in stage.counters
    assert stage.counters["episodes_plan_rules"] == 1
    assert [s.subtask for s in ep.steps] == ["approach the object"] * 3 + \
        ["grasp the object"] + ["move the object"] * 2
    assert ep.steps[0].reasoning.startswith("TASK: lift the cup PLAN: 1. ")
    assert stage.options()["planner"] == {"rules": "gripper events and motion runs "
                                                    "(transforms/plan.py)"}


def test_rules_planner_build_offline(bridge_dir, tmp_path, capsys):
    out = tmp_path / "o"
    assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", out,
                 "--max-episodes", "2", "--stages", "actions,reasoning",
                 "--reasoning-parts", "motion,plan", "--planner", "rules") == 0
    rows = read_rows(out)
    assert rows and all("PLAN: 1. " in r["reasoning"] and r["subtask"] for r in rows)
    capsys.readouterr()
    assert armdata("inspect", out, "--rows", "1") == 0   # inspect shows the reasoning columns
    printed = capsys.readouterr().out
    assert f"\n    motion     {rows[0]['motion']}\n" in printed
    assert f"\n    reasoning  {rows[0]['reasoning']}\n" in printed
