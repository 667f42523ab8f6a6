"""Bundled dataset configs load, and config mistakes give clear messages."""
from __future__ import annotations

import re

import pytest

from armdata.schemas.config import (CONFIG_DIR, DEFAULT_MASK, ConfigError, DatasetConfig,
                             available_configs, load_config, parse_config)
from armdata.transforms.standardize import FUNCTIONS

BUNDLED = ["fractal20220817_data", "bridge_dataset", "bridge", "bc_z",
           "libero_spatial_no_noops", "libero_object_no_noops", "libero_goal_no_noops",
           "libero_10_no_noops", "generic_example"]


def test_bundled_configs_present():
    assert set(BUNDLED) <= set(available_configs())


@pytest.mark.parametrize("name", available_configs())
def test_every_bundled_config_loads(name):
    config = load_config(name)
    assert config.standardize in FUNCTIONS
    FUNCTIONS[config.standardize].check_options(config.options)
    assert len(config.action_mask) == 7


@pytest.mark.parametrize("name", [n for n in BUNDLED if n != "generic_example"])
def test_dataset_configs_use_their_name_and_default_mask(name):
    config = load_config(name)
    assert config.name == name and list(config.action_mask) == DEFAULT_MASK
    assert config.instruction_key and config.state_key and config.require_instruction


def test_source_keys_from_spec():
    bridge = load_config("bridge_dataset")
    assert (bridge.image_key, bridge.instruction_key, bridge.state_key) == (
        "observation/image_0", "language_instruction", "observation/state")
    assert bridge.options == {"recompute_from_state": True} and bridge.version == 2
    for name in ("fractal20220817_data", "bridge", "bc_z"):
        config = load_config(name)
        assert config.standardize == name and config.image_key == "observation/image"
        assert config.instruction_key == "observation/natural_language_instruction"
    for suite in ("spatial", "object", "goal", "10"):
        libero = load_config(f"libero_{suite}_no_noops")
        assert libero.standardize == "libero" and libero.rotate_180
        assert (libero.image_key, libero.wrist_image_key, libero.instruction_key) == (
            "observation/image", "observation/wrist_image", "language_instruction")


def test_generic_example_documents_every_field():
    text = (CONFIG_DIR / "generic_example.yaml").read_text()
    for name in DatasetConfig.__dataclass_fields__:
        assert re.search(rf"^#?\s*{name}:", text, re.M), f"{name} is not shown in the example"
    config = load_config("generic_example")
    assert config.standardize == "generic" and config.options["gripper"] == "closed_is_one"


BASE = {"name": "x", "standardize": "identity", "image_key": "observation/image",
        "instruction_key": "language_instruction"}


@pytest.mark.parametrize("change,message", [
    ({"imag_key": "a"}, r"unknown field\(s\) \['imag_key'\]; allowed: \["),
    ({"action_mask": [True] * 6}, r"action_mask must be a list of 7 booleans"),
    ({"action_mask": [1] * 7}, r"action_mask must be a list of 7 booleans"),
    ({"standardize": "bridge_v3"}, r"standardize 'bridge_v3' is not one of \[.*'bridge_dataset'"),
    ({"instruction_key": None}, r"require_instruction is true but no instruction_key"),
    ({"options": {"recompute": True}}, r"options: standardize 'identity' does not take"),
    ({"standardize": "generic"}, r"options: standardize 'generic' needs option 'gripper'"),
    ({"standardize": "generic", "options": {"gripper": "sideways"}},
     r"options: gripper must be one of \['open_is_one'"),
    ({"standardize": "bridge_dataset", "options": {"recompute_from_state": 1}},
     r"recompute_from_state must be true or false"),
    ({"version": 0}, r"version must be an int >= 1"),
    ({"fps": "fast"}, r"fps must be a positive number"),
    ({"fps": 0}, r"fps must be a positive number"),
    ({"license": 4}, r"license must be a string"),
    ({"action_space": "joints"}, r"action_space must be one of \['ee_delta', 'unsupported'\]"),
    ({"action_space": "unsupported"}, r"unsupported_reason is required with"),
    ({"unsupported_reason": "why"}, r"unsupported_reason is required with"),
    ({"arms": [{"name": "arm1"}, {"xyz_indices": [3, 4, 5]}]},
     r"arms\[1\].name 'arm1' is used by an earlier arm"),
])
def test_config_errors(change, message):
    raw = {**BASE, **change}
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        parse_config(raw, source="test.yaml")


def test_config_file_errors(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nstandardize: generic\nimage_key: image\n"
                    "instruction_key: text\noptions: {gripper: open_is_one, extra: 1}\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: options: .*\['extra'\]"):
        load_config(str(path))
    with pytest.raises(ConfigError, match=r"unknown config 'nope'; bundled configs: .*bc_z"):
        load_config("nope")
    path.write_text("name: mine\nstandardize: generic\nimage_key: image\n"
                    "require_instruction: false\noptions: {gripper: open_is_one}\n")
    assert load_config(str(path)).instruction_key is None


def test_build_refuses_unsupported_action_space(tmp_path, capsys):
    from tests.conftest import build

    path = tmp_path / "joints.yaml"
    path.write_text("name: joints\nstandardize: identity\nimage_key: observation/image\n"
                    "instruction_key: language_instruction\naction_space: unsupported\n"
                    "unsupported_reason: joint-position actions (7 joint deltas)\n")
    assert build("--config", path, "--source", tmp_path / "nowhere", "--output",
                 tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("config 'joints': unsupported action space: joint-position "
                            "actions (7 joint deltas)")
    assert not (tmp_path / "out").exists()
