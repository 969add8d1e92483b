"""The ``tf-gpu`` backend: the full-precision Keras model on TensorFlow, on a GPU if visible."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

from coloi import hookimpl
from coloi.backend import BackendSettings, FixedSizeModelBackend, native_stderr_silenced
from coloi.models import ModelEntry

log = logging.getLogger("coloi")


def _gpu_device_present() -> bool:
    """A cheap guess, without importing TensorFlow, that an NVIDIA GPU is visible."""
    return Path("/dev/nvidia0").exists() or Path("/dev/dxg").exists()


class TensorFlowBackend(FixedSizeModelBackend):
    name = "tf-gpu"
    description = "full-precision Keras model on TensorFlow; uses a GPU when one is visible"
    model_format = "keras"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("tensorflow") is None:
            return "TensorFlow is not installed (pip install 'coloi[tf]', or 'coloi[gpu]')"
        return None

    @classmethod
    def auto_priority(cls) -> int:
        return 100 if _gpu_device_present() else -1

    def load(self, model: ModelEntry, settings: BackendSettings) -> None:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with native_stderr_silenced():
            import keras
            import tensorflow as tf

            from coloi.training import network  # registers the model's custom layer

            gpus = tf.config.list_physical_devices("GPU")

        if settings.threads:
            tf.config.threading.set_intra_op_parallelism_threads(settings.threads)
        if not gpus:
            log.warning("tf-gpu: no GPU is visible; running on the CPU")
        # safe_mode refuses models that would run arbitrary code (Lambda layers, pickles).
        self.keras_model = keras.saving.load_model(
            model.path,
            compile=False,
            safe_mode=True,
            custom_objects={"AnnealedMean": network.AnnealedMean},
        )
        self.forward = tf.function(
            lambda x: self.keras_model(x, training=False), reduce_retracing=True
        )

    def infer(self, lightness: np.ndarray) -> np.ndarray:
        ab = self.forward(lightness[None, :, :, None].astype(np.float32))
        return np.asarray(ab[0])


@hookimpl
def coloi_register_backends() -> list[type[FixedSizeModelBackend]]:
    return [TensorFlowBackend]
