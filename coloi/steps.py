"""The public API of preprocess and postprocess steps.

A step class declares its options as ``Option`` class attributes; users set them on the command
line as ``--pre NAME:key=value,key=value`` or in the config file. ``process`` is called for every
photo, so a step keeps no per-photo state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from coloi.errors import StepOptionError
from coloi.options import Option, apply_options, declared_options, parse_spec

__all__ = ["LabPhoto", "Option", "PostprocessStep", "PreprocessStep", "Step", "parse_step_spec"]


@dataclass
class LabPhoto:
    """A colourised photo in float32 CIE Lab, as postprocess steps see it.

    ``lightness`` is (H, W) L* in [0, 100]; ``ab`` is (H, W, 2) a*b*, both full resolution.
    """

    lightness: np.ndarray
    ab: np.ndarray


class Step(ABC):
    """Common part of preprocess and postprocess steps."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    kind: ClassVar[str]

    def __init__(self, **options: Any) -> None:
        apply_options(self, f"step {self.name!r}", options, StepOptionError)

    @classmethod
    def options(cls) -> dict[str, Option[Any]]:
        """The step's options by name, from its ``Option`` class attributes."""
        return declared_options(cls)


class PreprocessStep(Step):
    """Works on the grey photo, (H, W) float32 in [0, 1], before colourisation.

    It may change the size (a crop, say); the colour is then predicted for the new size.
    """

    kind: ClassVar[str] = "preprocess"

    @abstractmethod
    def process(self, grey: np.ndarray) -> np.ndarray:
        """Return the new grey photo, float32 in [0, 1]."""


class PostprocessStep(Step):
    """Works on the colourised photo in Lab before it is written."""

    kind: ClassVar[str] = "postprocess"

    @abstractmethod
    def process(self, photo: LabPhoto) -> LabPhoto:
        """Return the new photo (it may be the same object, changed in place)."""


def parse_step_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"name:key=value,key=value"`` -> ("name", {"key": "value", ...})."""
    return parse_spec(spec, "step", StepOptionError)
