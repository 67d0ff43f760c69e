"""What the page shows, as JSON-ready data: the model's layers, and one reading of a drawing.

Every array becomes a grey panel: its shape and its values scaled to 0-255 over the layer's
own range (min to max), row-major, so the page draws any layer kind the same way: a (C, H, W)
feature map as C small images, a vector (or C 1x1 maps) as a strip of cells.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from scipy.special import softmax

from lenet_bench.predict import NoDigit, TrainedModel, normalize_digit, read_image

TOP_GUESSES = 3


def grey_panel(values: np.ndarray) -> dict[str, Any]:
    """{'shape', 'min', 'max', 'pixels'}: values scaled so that min is black and max white."""
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return {"shape": list(values.shape), "min": low, "max": high,
            "pixels": np.round(scaled * 255).astype(np.uint8).ravel().tolist()}


def describe_model(trained: TrainedModel) -> dict[str, Any]:
    summary = trained.summary
    return {
        "run": trained.run_name, "run_id": trained.run_id, "backend": trained.backend_name,
        "architecture": trained.spec.model.arch_label, "params": summary.params, "mflops": summary.flops / 1e6,
        "input_shape": list(summary.input_shape), "classes": trained.spec.model.num_classes,
        "layers": [{"name": layer.name, "kind": layer.kind, "shape": list(layer.output_shape), "params": layer.params}
                   for layer in summary.layers],
    }


def read_drawing(trained: TrainedModel, image_bytes: bytes) -> dict[str, Any]:
    """The drawing as the network sees it, its guesses and every layer's activations; digit_found False if blank.

    DigitError (not NoDigit) when the bytes are not an image.
    """
    image = read_image(io.BytesIO(image_bytes), name="the drawing")
    try:
        digit = normalize_digit(image, source="the drawing")
    except NoDigit as err:
        return {"digit_found": False, "message": str(err)}
    x = trained.inputs(digit[None])
    outputs = trained.layer_outputs(x)
    probabilities = softmax(outputs[-1][0])  # the last layer's output: the logits
    ranked = np.argsort(probabilities)[::-1][:TOP_GUESSES]
    return {
        "digit_found": True,
        "input": grey_panel(x[0]),
        "probabilities": probabilities.tolist(),
        "top": [{"label": int(k), "probability": float(probabilities[k])} for k in ranked],
        "layers": [{"name": layer.name, **grey_panel(output[0])}
                   for layer, output in zip(trained.summary.layers, outputs, strict=True)],
    }
