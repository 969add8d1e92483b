"""The ``tflite`` backend: the int8-quantised model on the LiteRT interpreter (CPU, edge)."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from coloi import hookimpl
from coloi.backend import BackendSettings, FixedSizeModelBackend, native_stderr_silenced
from coloi.models import ModelEntry


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # LiteRT's deprecated predecessor, still common on edge devices
        from tflite_runtime.interpreter import Interpreter
    return Interpreter


class LiteRTBackend(FixedSizeModelBackend):
    name = "tflite"
    description = "int8-quantised model on the LiteRT interpreter; CPU and edge devices"
    model_format = "tflite"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("ai_edge_litert") or importlib.util.find_spec("tflite_runtime"):
            return None
        return "LiteRT is not installed (pip install ai-edge-litert)"

    @classmethod
    def auto_priority(cls) -> int:
        return 10

    def load(self, model: ModelEntry, settings: BackendSettings) -> None:
        with native_stderr_silenced():
            interpreter = _interpreter_class()(
                model_path=str(model.path), num_threads=settings.thread_count()
            )
            interpreter.allocate_tensors()
        self.interpreter = interpreter
        self.input_index = interpreter.get_input_details()[0]["index"]
        self.output_index = interpreter.get_output_details()[0]["index"]

    def infer(self, lightness: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(
            self.input_index, lightness[None, :, :, None].astype(np.float32)
        )
        self.interpreter.invoke()
        ab: np.ndarray = self.interpreter.get_tensor(self.output_index)[0]
        return ab


@hookimpl
def coloi_register_backends() -> list[type[FixedSizeModelBackend]]:
    return [LiteRTBackend]
