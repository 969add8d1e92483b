"""The public API of colourisation backends.

A backend turns the L* plane of a photo into an a*b* plane at a resolution of its choice; the
pipeline upsamples it and joins it with the photo's own full-resolution L*.
"""

from __future__ import annotations

import contextlib
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from coloi.errors import BackendOptionError, ColoiError, ModelError
from coloi.models import ModelEntry, find_model
from coloi.options import Option, apply_options, declared_options


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Hide what native libraries print on file descriptor 2 while a framework loads (absl's
    and LiteRT's start-up INFO lines); Python exceptions still propagate as usual."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass(frozen=True)
class BackendSettings:
    """What the user chose for a run: the model folder, a model name, CPU threads, and the
    backend's own options (``--backend NAME:key=value``, unparsed: the backend parses them)."""

    model_dir: Path | None = None
    model_name: str | None = None
    threads: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def thread_count(self) -> int:
        return self.threads or os.cpu_count() or 1


class Backend(ABC):
    """A colourisation backend. Subclasses set ``name`` and ``description``, and may declare
    options as :class:`coloi.options.Option` class attributes, as steps do.

    A backend is built once per run (it loads its model in ``__init__``) and then called for
    every photo, so loading work belongs in ``__init__`` and not in :meth:`predict_ab`. Its
    options are parsed from ``settings.options`` and set as attributes before ``__init__``
    runs, so ``__init__`` can use them; an unknown or invalid one raises
    :class:`coloi.errors.BackendOptionError`.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def __new__(cls, settings: BackendSettings | None = None, *args: Any, **kwargs: Any) -> Backend:
        # Here rather than in __init__, which every backend writes for itself and which need
        # not call ours: this way each backend's options are checked and set all the same.
        backend = super().__new__(cls)
        given = settings.options if settings is not None else {}
        apply_options(backend, f"backend {cls.name!r}", given, BackendOptionError)
        return backend

    @classmethod
    def options(cls) -> dict[str, Option[Any]]:
        """The backend's options by name, from its ``Option`` class attributes."""
        return declared_options(cls)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this backend cannot run here (e.g. a framework is missing), or None if it can.

        Must be cheap: it must not import heavy frameworks.
        """
        return None

    @classmethod
    def auto_priority(cls) -> int:
        """How strongly ``--backend auto`` should prefer this backend here; negative: never."""
        return -1

    @abstractmethod
    def __init__(self, settings: BackendSettings) -> None: ...

    def input_size(self) -> tuple[int, int] | None:
        """The (width, height) the backend resizes every photo to, or None for full size.

        The pipeline then makes that reduction on the grey photo, before computing L*, which is
        far cheaper on a large scan than computing L* at full size first.
        """
        return None

    @abstractmethod
    def predict_ab(self, lightness: np.ndarray) -> np.ndarray:
        """a*b* (h, w, 2) float32 for an L* plane (H, W) float32 in [0, 100].

        (h, w) may be anything: the pipeline stretches the plane to (H, W), so a model that
        squashes the photo to a square can return its square output as it is.
        """


class FixedSizeModelBackend(Backend):
    """A backend whose model takes a square L* input of a fixed size, found in the manifest.

    Subclasses set ``model_format`` (the manifest's ``format`` field they can load) and implement
    :meth:`load` and :meth:`infer`; the photo is resized to the model's input and back here.
    """

    model_format: ClassVar[str]

    def __init__(self, settings: BackendSettings) -> None:
        self.settings = settings
        self.model: ModelEntry = find_model(
            self.model_format, settings.model_dir, settings.model_name
        )
        try:
            self.load(self.model, settings)
        except ColoiError:
            raise
        except Exception as error:  # noqa: BLE001 - frameworks raise anything on a bad file
            # A file whose sha256 is the manifest's can still be no model at all (the manifest
            # written for the wrong file); the framework's complaint becomes one line.
            reason = " ".join(str(error).split())[:300]
            raise ModelError(
                f"{self.model.path}: cannot load the {self.model_format} model "
                f"({type(error).__name__}: {reason})"
            ) from None

    def input_size(self) -> tuple[int, int]:
        return (self.model.input_size, self.model.input_size)

    @abstractmethod
    def load(self, model: ModelEntry, settings: BackendSettings) -> None:
        """Load the verified model file ``model.path``."""

    @abstractmethod
    def infer(self, lightness: np.ndarray) -> np.ndarray:
        """a*b* (s/4, s/4, 2) for L* of shape (s, s) with s = ``self.model.input_size``."""

    def predict_ab(self, lightness: np.ndarray) -> np.ndarray:
        height, width = lightness.shape
        side = self.model.input_size
        interpolation = cv2.INTER_AREA if min(height, width) > side else cv2.INTER_LINEAR
        small = cv2.resize(lightness, (side, side), interpolation=interpolation)
        return self.infer(small)
