"""A completed run's saved model, loaded back from MLflow with what it needs to read new digits.

The run's `spec.yaml` gives the layer description, `preprocessing.json` the padding and
normalization its training images had, and the run's `backend` tag the backend whose
MLflow flavour saved the model. New images go through exactly the same preparation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydantic
import yaml
from scipy.special import softmax

from lenet_bench import backends
from lenet_bench.backends.protocol import Backend
from lenet_bench.data import preprocess_images
from lenet_bench.device import Device
from lenet_bench.results.tracking import MODEL_PATH, Tracker, resolve_tracking_uri
from lenet_bench.spec import Spec
from lenet_bench.spec.arch import ArchSummary


class RunUnusable(ValueError):
    """The run exists but its model cannot read digits (not a training run, no saved model, ...)."""


@dataclass(frozen=True)
class TrainedModel:
    run_id: str
    run_name: str
    backend_name: str
    spec: Spec
    preprocessing: dict[str, Any]  # input_size, offset, divisor: see data.PreparedData.preprocessing
    backend: Backend
    model: Any

    @classmethod
    def load(cls, run: str, tracking_uri: str | None = None) -> TrainedModel:
        """The run (an id, or the newest completed run of that name) and its model.

        LookupError when there is no such run, RunUnusable when it has no usable model,
        TrackingError when the store cannot be opened, BackendUnavailable when the
        framework that saved it is not installed.
        """
        tracker = Tracker(resolve_tracking_uri(tracking_uri), create=False)
        found = tracker.find_run(run)
        run_id, name = found.info.run_id, found.info.run_name
        backend_name = found.data.tags.get("backend")
        if backend_name not in backends.names():
            raise RunUnusable(f"run {name!r} ({run_id}) is not a model's training run (backend tag "
                              f"{backend_name!r}; expected one of {', '.join(backends.names())})")
        if not tracker.has_artifact(run_id, f"{MODEL_PATH}/MLmodel"):
            raise RunUnusable(f"run {name!r} ({run_id}) has no saved model (was it run with --no-log-model?); "
                              "rerun it with --force to save one")
        try:
            spec = Spec.model_validate(yaml.safe_load(tracker.download_text(run_id, "spec.yaml")))
        except pydantic.ValidationError as err:
            raise RunUnusable(f"run {name!r} ({run_id}): its spec.yaml does not validate with this version "
                              f"of lenet_bench:\n{err}") from None
        if spec.model.in_channels != 1:
            raise RunUnusable(f"run {name!r} was trained on {spec.model.in_channels}-channel images; "
                              "digits are grayscale")
        preprocessing = json.loads(tracker.download_text(run_id, "preprocessing.json"))
        backend = backends.activate(backend_name)
        if backend.MLFLOW_FLAVOR is None:
            raise RunUnusable(f"the {backend_name} backend of run {name!r} saves no models")
        model = tracker.load_model(run_id, backend.MLFLOW_FLAVOR)
        return cls(run_id, name, backend_name, spec, preprocessing, backend, model)

    @property
    def summary(self) -> ArchSummary:
        return self.spec.summary()

    def inputs(self, digits: np.ndarray) -> np.ndarray:
        """uint8 (N, 28, 28) digits -> float32 NCHW, padded and normalized as the run's training images."""
        return preprocess_images(digits, self.preprocessing["input_size"], self.preprocessing["offset"],
                                 self.preprocessing["divisor"], self.preprocessing.get("resize"))

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, classes) class probabilities of prepared inputs."""
        return softmax(self.backend.predict_logits(self.model, x, Device.CPU), axis=-1)

    def layer_outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """One array per layer of the description: NCHW feature maps or (N, units); the last are the logits."""
        return self.backend.layer_outputs(self.model, x)
