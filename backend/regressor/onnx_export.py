"""The regressor as ONNX, run with ONNX Runtime on CPU: the same output vector as the torch
network (``ParamLayout.decode`` reads both). Needs the ``onnx`` extra."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .model import PearRegressor
from .vit import INPUT_SIZE


def export_onnx(model: PearRegressor, path: str | Path, opset: int = 17) -> Path:
    """Write ``model`` (batch size free) to ``path``."""
    path = Path(path)
    example = torch.zeros(1, 3, *INPUT_SIZE)
    with warnings.catch_warnings():
        # The tracer notes the input-size check (sizes are fixed), and torch that this is the
        # TorchScript exporter: the default one needs onnxscript, which this environment
        # (onnx 1.18 beside mediapipe's protobuf 4.25) does not have.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False,
                          input_names=["images"], output_names=["output"],
                          dynamic_axes={"images": {0: "batch"}, "output": {0: "batch"}},
                          opset_version=opset)
    return path


class OnnxRegressor:
    """An exported regressor in ONNX Runtime: (B, 3, 256, 192) float32 -> (B, size)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options,
                                                    providers=["CPUExecutionProvider"])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"images": np.ascontiguousarray(images, np.float32)})[0]
