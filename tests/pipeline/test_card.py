"""The dataset card's license id (`armdata push --license`, the config's `license:`): only ids the
Hub's license table lists, checked before any upload (SPEC §9)."""
from __future__ import annotations

import pytest

from armdata.pipeline.sinks.card import hub_license


# Ids the Hub's table added after the list was first typed (docs/hub/repositories-licenses.md).
@pytest.mark.parametrize("license", ["openmdw-1.0", "openmdw-1.1", "llama4", "grok2-community",
                                     "fair-noncommercial-research-license"])
def test_recent_hub_ids_are_accepted(license: str) -> None:
    assert hub_license(license, {}) == license


@pytest.mark.parametrize("license", ["cc-by-4", "Apache-2.0", "cc-by-nc-sa-1.0", "gpl-4.0", ""])
def test_ids_the_hub_does_not_list_are_refused(license: str) -> None:
    with pytest.raises(ValueError, match="is not a Hub license id"):
        hub_license(license, {})


@pytest.mark.parametrize("declared,card", [
    ("CC-BY-4.0", "cc-by-4.0"), ("OpenMDW-1.1", "openmdw-1.1"), ("Apache-2.0", "apache-2.0"),
    ("MyLab-1.0", "other"), (None, "other")])
def test_config_license_as_hub_id(declared: str | None, card: str) -> None:
    assert hub_license(None, {"license": declared}) == card
