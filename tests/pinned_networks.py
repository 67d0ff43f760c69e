"""Every variant's network in plain data: layer names, kinds, shapes, parameters and activation, and a digest of
its seed-0 initial weights. `python tests/pinned_networks.py ROOT` prints it as JSON (how the pin was written)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from lenet_bench.spec.loading import load_variants
from lenet_bench.training.weights import initial_weights


def networks(root: Path) -> dict[str, dict]:
    found = {}
    for variant in load_variants([root / "specs", root / "paper1998"]):
        summary = variant.spec.summary()
        layers = [[layer.name, layer.kind, list(layer.input_shape), list(layer.output_shape), layer.params,
                   getattr(layer, "activation", None)] for layer in summary.layers]
        digest = None
        if variant.spec.model.init != "framework":
            weights = hashlib.sha256()
            for array in initial_weights(summary, variant.spec.model.init, 0):
                weights.update(array.tobytes())
            digest = weights.hexdigest()[:16]
        found[variant.name] = {"layers": layers, "params": summary.params, "macs": summary.macs, "init_seed0": digest}
    return found


if __name__ == "__main__":
    print(json.dumps(networks(Path(sys.argv[1])), indent=1, sort_keys=True))
