"""The public API of preprocess and postprocess steps.

A step class declares its options as ``Option`` class attributes; users set them on the command
line as ``--pre NAME:key=value,key=value`` or in the config file. ``process`` is called for every
photo, so a step keeps no per-photo state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, overload

import numpy as np

from coloi.errors import StepOptionError

T = TypeVar("T")


@dataclass(frozen=True)
class Option(Generic[T]):
    """One option of a step: its type (float, int, str or bool), default and help text.

    Declared as a class attribute; on an instance the attribute reads as the parsed value, so
    type checkers see ``self.amount`` as a float, not an Option.
    """

    kind: type[T]
    default: T
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None

    def parse(self, step: str, key: str, text: Any) -> Any:
        try:
            if self.kind is bool and isinstance(text, str):
                if text.lower() not in {"true", "false", "yes", "no", "1", "0", "on", "off"}:
                    raise ValueError(text)
                value: Any = text.lower() in {"true", "yes", "1", "on"}
            else:
                value = self.kind(text)  # type: ignore[call-arg]  # float, int or str
        except (TypeError, ValueError):
            raise StepOptionError(
                f"step {step!r}: option {key}={text!r} is not a {self.kind.__name__}") from None
        if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum):
            raise StepOptionError(f"step {step!r}: option {key}={value} is outside "
                                  f"[{self.minimum}, {self.maximum}]")
        if self.choices is not None and value not in self.choices:
            raise StepOptionError(f"step {step!r}: option {key}={value!r} is not one of "
                                  f"{', '.join(map(str, self.choices))}")
        return value

    @overload
    def __get__(self, instance: None, owner: type) -> Option[T]: ...

    @overload
    def __get__(self, instance: object, owner: type) -> T: ...

    def __get__(self, instance: object | None, owner: type) -> Option[T] | T:
        # Step.__init__ stores every parsed value on the instance, which shadows this
        # non-data descriptor; the default is the answer only if that did not happen.
        return self if instance is None else self.default


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
        declared = self.options()
        unknown = sorted(set(options) - set(declared))
        if unknown:
            raise StepOptionError(f"step {self.name!r}: unknown option {unknown[0]!r} "
                                  f"(known: {', '.join(declared) or 'none'})")
        for key, option in declared.items():
            value = option.parse(self.name, key, options[key]) if key in options else (
                option.default)
            setattr(self, key, value)

    @classmethod
    def options(cls) -> dict[str, Option[Any]]:
        """The step's options by name, from its ``Option`` class attributes."""
        found: dict[str, Option[Any]] = {}
        for klass in reversed(cls.__mro__):
            found.update({k: v for k, v in vars(klass).items() if isinstance(v, Option)})
        return found


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
    name, _, rest = spec.partition(":")
    options: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise StepOptionError(f"step {name!r}: option {pair!r} is not key=value")
        options[key.strip()] = value.strip()
    if not name.strip():
        raise StepOptionError(f"step spec {spec!r} has no name")
    return name.strip(), options
