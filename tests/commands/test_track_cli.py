"""`armdata track` on generated videos: accuracy, backwards tracking, inputs and errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from armdata.testing.synthetic_video import make_hard_video, make_video, write_frames, write_video
from armdata.transforms.trace import trace_error, tracking_scores


def _main(argv: list[str]) -> int:
    from armdata.cli import main

    return main(argv)


def _clean_frame(video, t):
    while video.occluded_near[t]:
        t += 1
    return t


@pytest.mark.parametrize("seed,start,as_video", [(21, 0, False), (22, 25, False), (23, 0, True)])
def test_track_json_accuracy(tmp_path, capsys, seed, start, as_video):
    video = make_video(seed, num_frames=50)
    if as_video:
        path = write_video(video, tmp_path / "v.avi")
    else:
        path = write_frames(video, tmp_path / "f")
    t = _clean_frame(video, start)
    x, y = video.xy[t]
    assert _main(["track", str(path), "--point", f"{x},{y}", "--frame", str(t), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["tracks"]) == len(out["visible"]) == 50
    err = trace_error(np.array(out["tracks"]), video.xy, video.visible)
    assert err["mean_px"] <= 1.5, err
    assert np.mean(out["visible"]) >= 0.9


@pytest.mark.parametrize("tracker", ["affine", "lk"])
def test_track_hard_video_by_tracker(tmp_path, capsys, tracker):
    """`lk` stays selectable; on a hard video (turns, scale, fingers, light, JPEG, a bar) the
    default keeps the gripper where lk loses it, and both report the covered frames hidden."""
    video = make_hard_video(7006, num_frames=40)
    path = write_frames(video, tmp_path / "f")
    argv = ["track", str(path), "--point", "{},{}".format(*video.xy[0]), "--json"]
    assert _main(argv + ([] if tracker == "affine" else ["--tracker", tracker])) == 0
    out = json.loads(capsys.readouterr().out)
    scores = tracking_scores(np.array(out["tracks"]), np.array(out["visible"]), video.xy,
                             video.visible)
    assert scores["hidden"] >= 0.8
    assert (scores["within"] >= 0.9) == (tracker == "affine"), scores


def test_track_table_output(tmp_path, capsys):
    video = make_video(24, num_frames=5, occlusions=0)
    path = write_frames(video, tmp_path / "f")
    assert _main(["track", str(path), "--point", "{},{}".format(*video.xy[0])]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and lines[0].split("\t")[3] == "visible"


@pytest.mark.parametrize("argv_tail,message", [
    (["--point", "400,10"], "outside the 256x256 image"),
    (["--point", "10,10", "--frame", "7"], "outside the video"),
    ([], "give the point with --point"),
])
def test_track_errors(tmp_path, capsys, argv_tail, message):
    path = write_frames(make_video(0, num_frames=3), tmp_path / "f")
    assert _main(["track", str(path)] + argv_tail) == 2
    assert message in capsys.readouterr().err


def test_track_empty_inputs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _main(["track", str(tmp_path / "empty"), "--point", "1,1"]) == 2
    assert "no frames" in capsys.readouterr().err
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    assert _main(["track", str(tmp_path / "broken.mp4"), "--point", "1,1"]) == 2
    assert "no frames" in capsys.readouterr().err
    assert _main(["track", str(tmp_path / "missing"), "--point", "1,1"]) == 2
    assert "neither" in capsys.readouterr().err


def test_bad_point_syntax(tmp_path):
    with pytest.raises(SystemExit):
        _main(["track", str(tmp_path), "--point", "12"])


def test_track_with_cotracker3_from_a_local_clone(tmp_path, capsys):
    """--tracker cotracker3 --cotracker-repo DIR goes through the trackers' factory (here a
    stand-in clone whose model keeps the point where it was seeded)."""
    from tests.models.test_trackers import write_echo_cotracker

    path = write_frames(make_video(0, num_frames=4), tmp_path / "f")
    repo = write_echo_cotracker(tmp_path / "co-tracker")
    assert _main(["track", str(path), "--point", "12,34", "--frame", "1", "--tracker",
                  "cotracker3", "--cotracker-repo", str(repo), "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"tracks": [[12.0, 34.0]] * 4,
                                                   "visible": [True] * 4}
