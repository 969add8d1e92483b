"""coloi: automatic colourisation of black-and-white photographs.

As a library::

    import coloi

    rgb = coloi.colourise(grey_array)            # NumPy in (grey or RGB), RGB out
    with coloi.Colouriser(backend="tflite") as colouriser:
        for path in paths:
            data = colouriser.colourise(path)    # encoded bytes, in the input's format

Arrays are in Pillow's channel order (RGB), not OpenCV's BGR. See ``docs/api.md``.

Plugin authors need only ``coloi.hookimpl`` and the classes in ``coloi.backend`` and
``coloi.steps``. Importing this package loads nothing heavy: the names below are imported on
first use (module ``__getattr__``), so ``coloi --help`` stays instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("coloi")

if TYPE_CHECKING:
    from coloi.api import Colouriser, colourise, encode_photo, read_photo, write_photo
    from coloi.errors import (
        ColoiError,
        OutputExists,
        PhotoError,
        UnreadablePhoto,
        UnwritableOutput,
    )
    from coloi.imageio import Limits, Photo

# Public name -> the module that defines it.
_LAZY = {
    "Colouriser": "coloi.api",
    "colourise": "coloi.api",
    "write_photo": "coloi.api",
    "read_photo": "coloi.api",
    "encode_photo": "coloi.api",
    "Photo": "coloi.imageio",
    "Limits": "coloi.imageio",
    "ColoiError": "coloi.errors",
    "PhotoError": "coloi.errors",
    "UnreadablePhoto": "coloi.errors",
    "OutputExists": "coloi.errors",
    "UnwritableOutput": "coloi.errors",
}

__all__ = [
    "ColoiError",
    "Colouriser",
    "Limits",
    "OutputExists",
    "Photo",
    "PhotoError",
    "UnreadablePhoto",
    "UnwritableOutput",
    "__version__",
    "colourise",
    "encode_photo",
    "hookimpl",
    "read_photo",
    "write_photo",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # imported once
        return value
    raise AttributeError(f"module 'coloi' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
