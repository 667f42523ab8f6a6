"""Training mixtures: `configs/mixtures/*.yaml` and `armdata train --mixture NAME --data-root DIR`."""
from __future__ import annotations

import argparse

import pytest

from armdata.schemas.config import available_configs
from tests.conftest import armdata
from armdata.trainer.mixtures import available_mixtures, data_specs, load_mixture, resolve

# Octo's OXE_MAGIC_SOUP (octo/data/oxe/oxe_dataset_mixes.py), read with the search tool
OCTO_MAGIC_SOUP = {
    "fractal20220817_data": 0.54087122203, "kuka": 0.8341046294, "bridge_dataset": 1.0,
    "taco_play": 2.0, "jaco_play": 1.0, "berkeley_cable_routing": 1.0, "roboturk": 2.0,
    "nyu_door_opening_surprising_effectiveness": 1.0, "viola": 2.0, "berkeley_autolab_ur5": 2.0,
    "toto": 1.0, "language_table": 0.1,
    "stanford_hydra_dataset_converted_externally_to_rlds": 2.0,
    "austin_buds_dataset_converted_externally_to_rlds": 1.0,
    "nyu_franka_play_dataset_converted_externally_to_rlds": 3.0,
    "furniture_bench_dataset_converted_externally_to_rlds": 0.1,
    "ucsd_kitchen_dataset_converted_externally_to_rlds": 2.0,
    "austin_sailor_dataset_converted_externally_to_rlds": 1.0,
    "austin_sirius_dataset_converted_externally_to_rlds": 1.0, "bc_z": 0.2,
    "dlr_edan_shared_control_converted_externally_to_rlds": 1.0,
    "iamlab_cmu_pickup_insert_converted_externally_to_rlds": 1.0, "utaustin_mutex": 1.0,
    "berkeley_fanuc_manipulation": 2.0, "cmu_stretch": 1.0}


def test_bundled_mixtures():
    assert available_mixtures() == ["molmoact_pretrain", "oxe_magic_soup"]
    soup = load_mixture("oxe_magic_soup")
    assert soup.weights == OCTO_MAGIC_SOUP and list(soup.weights) == list(OCTO_MAGIC_SOUP)
    assert soup.balance_by_size                     # Octo/OpenVLA: balance_weights=True
    assert set(soup.weights) <= set(available_configs())       # every dataset has a config
    molmoact = load_mixture("molmoact_pretrain")
    assert molmoact.weights == {"fractal20220817_data": 0.40, "bridge_dataset": 0.25,
                                "bc_z": 0.15} and not molmoact.balance_by_size   # SPEC §8


def built(root, *names):
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "manifest.json").write_text("{}")


def test_resolve_to_builds_and_name_the_missing(tmp_path):
    mixture = load_mixture("molmoact_pretrain")
    built(tmp_path, "fractal20220817_data", "bc_z")
    (tmp_path / "bridge_dataset").mkdir()            # started, never finished: no manifest
    with pytest.raises(ValueError, match=r"no finished build .* for 1 of 3 datasets: "
                                         r"bridge_dataset$"):
        resolve(mixture, str(tmp_path))
    (tmp_path / "bridge_dataset" / "manifest.json").write_text("{}")
    assert resolve(mixture, str(tmp_path) + "/") == [
        (f"{tmp_path}/fractal20220817_data", 0.40), (f"{tmp_path}/bridge_dataset", 0.25),
        (f"{tmp_path}/bc_z", 0.15)]


def test_data_specs_and_mixture_files(tmp_path):
    def args(**kw):
        return argparse.Namespace(**{"data": None, "mixture": None, "data_root": None, **kw})

    assert data_specs(args(data="a:2,b")) == ([("a", 2.0), ("b", 1.0)], False)
    for bad, message in ((args(), "either --data or --mixture"),
                         (args(data="a", mixture="oxe_magic_soup"), "either --data or"),
                         (args(data="a", data_root="r"), "--data-root is for --mixture"),
                         (args(mixture="oxe_magic_soup"), "--mixture needs --data-root")):
        with pytest.raises(ValueError, match=message):
            data_specs(bad)
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nbalance_by_size: true\ndatasets: {toto: 1, kuka: 3}\n")
    built(tmp_path / "data", "toto", "kuka")
    assert data_specs(args(mixture=str(path), data_root=str(tmp_path / "data"))) == (
        [(f"{tmp_path}/data/toto", 1.0), (f"{tmp_path}/data/kuka", 3.0)], True)
    path.write_text("datasets: {toto: 0}\n")
    with pytest.raises(ValueError, match="datasets must map dataset names to positive weights"):
        load_mixture(str(path))
    with pytest.raises(ValueError, match=r"unknown mixture 'soup'; bundled: molmoact_pretrain"):
        load_mixture("soup")


def test_train_command_refuses_in_one_line(tmp_path, capsys):
    assert armdata("train", "--mixture", "oxe_magic_soup", "--data-root", tmp_path,
                   "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("armdata train: error: mixture 'oxe_magic_soup': no finished build "
                          "(manifest.json) under") and "for 25 of 25 datasets" in err
    assert "\n" not in err and not (tmp_path / "run").exists()
