"""Specs: the YAML schema, loading and matrix expansion, and framework-free architecture arithmetic."""

from lenet_bench.device import DEVICES, Device
from lenet_bench.spec.loading import (
    DEFAULT_SUITE,
    Issue,
    SpecError,
    Variant,
    find_spec_files,
    load_variants,
    revalidated,
)
from lenet_bench.spec.schema import ConvLayer, DataSpec, ModelSpec, OptimizerSpec, Spec, TrainSpec

__all__ = ["DEFAULT_SUITE", "DEVICES", "Device", "ConvLayer", "DataSpec", "Issue", "ModelSpec", "OptimizerSpec", "Spec", "SpecError",
           "TrainSpec", "Variant", "find_spec_files", "load_variants", "revalidated"]
