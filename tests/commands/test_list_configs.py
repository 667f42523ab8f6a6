"""`armdata configs`: the listing, and `--check SOURCE` (the build's preflight without a build)."""
from __future__ import annotations

import json

from tests.conftest import armdata


def test_listing_has_every_bundled_config_with_fps_and_licence(capsys):
    from armdata.schemas.config import available_configs

    assert armdata("configs") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "action_space", "cameras", "fps", "license"]
    listed = {line.split()[0]: line for line in lines[1:]}
    assert sorted(listed) == [n for n in available_configs() if n != "generic_example"]
    assert listed["taco_play"].split() == [
        "taco_play", "ee_delta", "observation/rgb_static", "+", "observation/rgb_gripper", "15",
        "CC-BY-4.0"]
    assert armdata("configs", "--json") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    # Octo's own copies have no published licence, and these no published control rate
    # (README "Other Open-X datasets"); every other config has both
    assert {n for n, r in rows.items() if not r["license"]} == {
        "cmu_playing_with_food", "gnm_dataset", "aloha_static_dataset", "aloha_dagger_dataset",
        "rh20t", "mujoco_manip"}
    assert {n for n, r in rows.items() if not r["fps"]} == {
        "stanford_mask_vit_converted_externally_to_rlds", "gnm_dataset", "rh20t", "mujoco_manip"}
    assert rows["robo_set"]["action_space"] == "unsupported" and \
        rows["robo_set"]["unsupported_reason"] == "joint-position actions (Octo: JOINT_POS)"
    assert rows["fractal20220817_data"]["source"] == \
        "gs://gresearch/robotics/fractal20220817_data/0.1.0"


def test_check_source(bridge_dir, tmp_path, capsys):
    assert armdata("configs", "--check", bridge_dir) == 0      # config named by dataset_info
    assert capsys.readouterr().out.strip() == f"config 'bridge_dataset' matches {bridge_dir}"
    assert armdata("configs", "--check", bridge_dir, "--config", "bc_z") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("armdata configs: error: config 'bc_z': image_key 'observation/image' "
                          "is not a steps key of") and "observation/image_0" in err
    (tmp_path / "x" / "1.0.0").mkdir(parents=True)
    assert armdata("configs", "--check", tmp_path / "x" / "1.0.0", "--config", "toto") == 2
    assert "no readable features.json to check config 'toto' against" in \
        capsys.readouterr().err
    assert armdata("configs", "--config", "toto") == 2
    assert capsys.readouterr().err.strip() == \
        "armdata configs: error: --config is for --check SOURCE"

