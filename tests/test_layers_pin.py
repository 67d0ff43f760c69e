"""Every spec of specs/ and paper1998/ builds the network it built before `model.layers` existed: the same
layers in the same order (names, kinds, shapes, parameters, activations) and the same initial weights from
seed 0. tests/data/networks_before_layers.json was written by tests/pinned_networks.py at commit d0d3d4e,
the last one with the template form only. One entry changed since, on purpose: lecun1998's initial weights, when
its spec moved to init lecun_uniform_sqrt (issue 37); its layers are pinned as they were."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pinned_networks import networks

ROOT = Path(__file__).resolve().parents[1]
BEFORE = json.loads((ROOT / "tests" / "data" / "networks_before_layers.json").read_text())
NOW = networks(ROOT)


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_every_existing_spec_builds_the_same_network(name):
    assert NOW[name] == BEFORE[name]


def test_no_pinned_spec_went_missing():
    assert sorted(BEFORE) == sorted(set(BEFORE) & set(NOW))
