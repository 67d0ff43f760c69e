"""What a process that trains run after run (inline, a local or Dask worker) does once, not per run:
the framework's import-time objects kept out of the collection after each run, and the datasets'
copies in a Keras engine's arrays kept for the next run on the same data."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from lenet_bench.backends.keras_common.device_data import RecentDeviceData


def test_the_recent_datasets_are_copied_once_and_the_least_recently_used_dropped():
    copies: list[str] = []

    def copier(key: str):
        return lambda: copies.append(key) or f"arrays of {key}"

    kept: RecentDeviceData[str] = RecentDeviceData(keep=2)
    assert kept.get("padded", copier("padded")) == "arrays of padded"
    assert kept.get("unpadded", copier("unpadded")) == "arrays of unpadded"
    assert kept.get("padded", copier("padded")) == "arrays of padded"  # reused, and now the most recent
    assert copies == ["padded", "unpadded"]
    kept.get("cifar", copier("cifar"))  # drops unpadded, the least recently used
    assert len(kept) == 2
    kept.get("padded", copier("padded"))
    kept.get("unpadded", copier("unpadded"))
    assert copies == ["padded", "unpadded", "cifar", "unpadded"]


def test_importing_a_framework_keeps_its_objects_out_of_later_collections():
    """What a collection after each run walks (gc.get_objects: every generation it visits) stays about what it
    was before PyTorch was imported, though PyTorch's objects are alive: the per-run collection stays cheap."""
    script = textwrap.dedent("""
        import gc, sys
        from lenet_bench import backends
        gc.collect()
        before = len(gc.get_objects())
        backends.activate("torch")
        gc.collect()
        after = len(gc.get_objects())
        backends.activate("torch")  # already imported: nothing more kept out
        print("torch" in sys.modules, before, after, gc.get_freeze_count())
    """)
    imported, before, after, kept_out = subprocess.run([sys.executable, "-c", script], check=True,
                                                       capture_output=True, text=True).stdout.split()
    assert imported == "True"
    assert int(kept_out) > 50_000, "PyTorch alone: about 160,000 objects, alive and out of the collections"
    assert int(after) - int(before) < 5_000, "the collection walks few of them"
