"""coloi as a library: :func:`colourise` for one photo, :class:`Colouriser` for many.

Channel order: arrays are taken and given in **Pillow's order** (grey, RGB or RGBA), never
OpenCV's BGR; convert with ``cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)`` first. Only
:attr:`coloi.Photo.pixels` is BGR, as OpenCV decodes it (:attr:`coloi.Photo.rgb` gives RGB).

Every function here raises :class:`coloi.ColoiError` subclasses (a photo that cannot be read
raises :class:`coloi.UnreadablePhoto` naming it and the reason), and plain ``TypeError`` for
an argument of the wrong kind.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload

import cv2
import numpy as np
from PIL import Image

from coloi.backend import Backend, BackendSettings
from coloi.batch import SUFFIX_FORMAT
from coloi.errors import BackendOptionError, ColoiError, PhotoError
from coloi.imageio import (
    FORMAT_SUFFIX,
    Limits,
    Photo,
    decode_photo,
    write_atomically,
)
from coloi.imageio import encode_photo as _encode_pixels
from coloi.imageio import read_photo as _read_file_photo
from coloi.options import parse_spec
from coloi.pipeline import Pipeline
from coloi.settings import PluginSettings
from coloi.steps import PostprocessStep, PreprocessStep, parse_step_spec

if TYPE_CHECKING:
    from coloi.plugin_host import Registry

__all__ = [
    "Colouriser",
    "Limits",
    "Photo",
    "colourise",
    "encode_photo",
    "read_photo",
    "write_photo",
]

PathLike = str | os.PathLike[str]
# The output format for a decoded input format: its own, except GIF (coloi does not write it).
_OUTPUT_FORMAT = {
    "gif": "png",
    "jpeg": "jpeg",
    "png": "png",
    "tiff": "tiff",
    "webp": "webp",
    "bmp": "bmp",
}


class Colouriser:
    """A backend and steps, loaded once and applied to photo after photo.

    ``backend`` is a name (``"tflite"``, ``"tf-gpu"``, ``"auto"``, or one a plugin adds), with
    the backend's options if it has any (``"flat:a=-10,b=-30"``), or a
    :class:`coloi.backend.Backend` already built; ``pre`` and ``post`` are step specs
    (``"denoise:strength=6"``) or step instances, applied in order. ``model_dir``, ``model`` and
    ``threads`` are the command line's ``--model-dir``, ``--model`` and ``--threads``.
    ``plugins`` names plugins not to load, or is a :class:`coloi.settings.PluginSettings`.
    Building it loads the plugins and the model; errors in any of these raise
    :class:`coloi.ColoiError` here, before any photo.

    Use it as a context manager (``with coloi.Colouriser() as c: ...``) to release the model
    at the end. One Colouriser may be shared by several threads: calls into the backend are
    serialised, while decoding, steps and encoding run in parallel.
    """

    def __init__(
        self,
        backend: str | Backend = "auto",
        *,
        pre: Sequence[str | PreprocessStep] = (),
        post: Sequence[str | PostprocessStep] = (),
        model_dir: PathLike | None = None,
        model: str | None = None,
        threads: int | None = None,
        limits: Limits | None = None,
        quality: int = 95,
        plugins: PluginSettings | Iterable[str] = (),
    ) -> None:
        self.limits = limits or Limits()
        self.quality = quality
        self._plugins = plugins
        self._registry: Registry | None = None
        preprocess, postprocess = self._steps(pre, post)
        if isinstance(backend, str):
            name, options = parse_spec(backend, "backend", BackendOptionError)
            settings = BackendSettings(
                Path(model_dir) if model_dir is not None else None, model, threads, options
            )
            backend = self._plugin_registry().backend(name)(settings)  # type: ignore[call-arg]
        self._pipeline: Pipeline | None = Pipeline(backend, preprocess, postprocess)

    def _plugin_registry(self) -> Registry:
        if self._registry is None:  # loaded on first need: not at all for built instances
            from coloi.plugin_host import get_registry

            self._registry = get_registry(self._plugins)
        return self._registry

    def _steps(
        self,
        pre: Sequence[str | PreprocessStep],
        post: Sequence[str | PostprocessStep],
    ) -> tuple[list[PreprocessStep], list[PostprocessStep]]:
        if isinstance(pre, str) or isinstance(post, str):
            raise TypeError("pre and post are sequences of steps: write pre=['autolevels']")

        def built(kind: str, step: Any) -> Any:
            return (
                self._plugin_registry().step(kind, *parse_step_spec(step))
                if (isinstance(step, str))
                else step
            )

        return (
            [built("preprocess", step) for step in pre],
            [built("postprocess", step) for step in post],
        )

    def with_steps(
        self,
        *,
        pre: Sequence[str | PreprocessStep] | None = None,
        post: Sequence[str | PostprocessStep] | None = None,
    ) -> Colouriser:
        """A Colouriser on this one's loaded backend (nothing is loaded again) with other
        steps: ``pre`` or ``post`` replace this one's when given. Its calls into the backend
        are serialised with this one's, so both may be used from several threads at once.
        Unknown steps or options raise :class:`coloi.ColoiError`, as when building one."""
        pipeline = self.pipeline
        preprocess, postprocess = self._steps(
            pipeline.preprocess if pre is None else pre,
            pipeline.postprocess if post is None else post,
        )
        other = copy.copy(self)
        # dataclasses.replace keeps the backend lock: one lock for every user of the backend.
        other._pipeline = dataclasses.replace(
            pipeline, preprocess=preprocess, postprocess=postprocess
        )
        return other

    @property
    def pipeline(self) -> Pipeline:
        """The loaded backend and steps (what ``coloi run``, ``watch`` and ``eval`` drive)."""
        pipeline = self._pipeline
        if pipeline is None:
            raise ColoiError("this Colouriser is closed")
        return pipeline

    @property
    def backend(self) -> Backend:
        """The loaded backend (its ``name`` says which one ``"auto"`` chose)."""
        return self.pipeline.backend

    def __enter__(self) -> Colouriser:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Let go of the backend and its model (freed once no thread is still using them);
        the Colouriser cannot be used afterwards."""
        self._pipeline = None

    @overload
    def colourise(self, image: np.ndarray) -> np.ndarray: ...
    @overload
    def colourise(self, image: Image.Image) -> Image.Image: ...
    @overload
    def colourise(self, image: Photo) -> Photo: ...
    @overload
    def colourise(self, image: bytes | PathLike) -> bytes: ...

    def colourise(
        self,
        image: np.ndarray | Image.Image | Photo | bytes | PathLike,
    ) -> np.ndarray | Image.Image | Photo | bytes:
        """Colourise one photo and give it back in the kind it came in:

        - a NumPy array, uint8 or uint16, (H, W) grey or (H, W, 3) RGB or (H, W, 4) RGBA, in
          Pillow's channel order (not OpenCV's BGR): an RGB array (RGBA with alpha) of the
          same size and dtype;
        - a ``PIL.Image.Image`` (any mode; 16-bit grey is read at 16 bits): a new RGB image
          (RGBA with alpha), 8 bits, carrying the input's ICC profile;
        - a path (``str`` or ``os.PathLike``) or encoded ``bytes`` of a JPEG, PNG, TIFF, WebP,
          BMP or GIF: the encoded output in the same format (a GIF gives PNG), with EXIF
          orientation applied and EXIF and an RGB ICC profile carried over, as ``coloi run``
          writes it; the file is only read;
        - a :class:`coloi.Photo` (from :func:`coloi.read_photo`): a new Photo.

        A colour photo is colourised from its luminance. Raises
        :class:`coloi.UnreadablePhoto` for bytes or a file that cannot be decoded.
        """
        pipeline = self.pipeline  # one reference for the whole photo, even if closed meanwhile
        if isinstance(image, Photo):
            return _colourise_photo(pipeline, image)
        if isinstance(image, np.ndarray):
            return _colourise_array(pipeline, image)
        if isinstance(image, Image.Image):
            return _colourise_pil(pipeline, image)
        if isinstance(image, bytes | bytearray | memoryview):
            photo = decode_photo(bytes(image), "<bytes>", self.limits)
        elif isinstance(image, str | os.PathLike):
            photo = _read_file_photo(Path(image), self.limits)
        else:
            raise TypeError(
                f"cannot colourise a {type(image).__name__}: give a path, bytes, "
                f"a PIL image or a NumPy array"
            )
        out = _colourise_photo(pipeline, photo)
        return _encode_pixels(
            out.pixels, _OUTPUT_FORMAT[photo.format], out.exif, out.icc_profile, self.quality
        )


def _colourise_photo(pipeline: Pipeline, photo: Photo) -> Photo:
    return Photo(pipeline.colourise(photo), photo.format, photo.exif, photo.icc_profile)


def _colourise_array(pipeline: Pipeline, array: np.ndarray) -> np.ndarray:
    if array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"an image array must be uint8 or uint16, not {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))) or (
        min(array.shape[:2]) < 1
    ):
        raise TypeError(
            f"an image array must be (H, W) grey, (H, W, 3) RGB or (H, W, 4) "
            f"RGBA, not of shape {array.shape}"
        )
    pixels = np.ascontiguousarray(array)
    if pixels.ndim == 3:  # the pipeline, like OpenCV, works in BGR
        code = cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR
        pixels = cv2.cvtColor(pixels, code)
    return Photo(pipeline.colourise(Photo(pixels, "png")), "png").rgb


def _colourise_pil(pipeline: Pipeline, image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # Pillow's 16-bit grey modes: 16 bits through the pipeline (Pillow has no 16-bit RGB).
        grey = np.clip(np.asarray(image, dtype=np.int64), 0, 65535).astype(np.uint16)
        rgb = _colourise_array(pipeline, grey)
        out = Image.fromarray((rgb >> 8).astype(np.uint8), "RGB")
    else:
        alpha = "A" in image.getbands() or "transparency" in image.info
        mode = "RGBA" if alpha else ("L" if image.mode in ("1", "L", "F") else "RGB")
        rgb = _colourise_array(pipeline, np.asarray(image.convert(mode)))
        out = Image.fromarray(rgb, "RGBA" if rgb.shape[2] == 4 else "RGB")
    icc = image.info.get("icc_profile")
    if icc:
        out.info["icc_profile"] = icc
    return out


@overload
def colourise(
    image: np.ndarray,
    *,
    backend: str = ...,
    pre: Sequence[str] = ...,
    post: Sequence[str] = ...,
    model_dir: PathLike | None = ...,
    model: str | None = ...,
    threads: int | None = ...,
    quality: int = ...,
) -> np.ndarray: ...
@overload
def colourise(
    image: Image.Image,
    *,
    backend: str = ...,
    pre: Sequence[str] = ...,
    post: Sequence[str] = ...,
    model_dir: PathLike | None = ...,
    model: str | None = ...,
    threads: int | None = ...,
    quality: int = ...,
) -> Image.Image: ...
@overload
def colourise(
    image: Photo,
    *,
    backend: str = ...,
    pre: Sequence[str] = ...,
    post: Sequence[str] = ...,
    model_dir: PathLike | None = ...,
    model: str | None = ...,
    threads: int | None = ...,
    quality: int = ...,
) -> Photo: ...
@overload
def colourise(
    image: bytes | PathLike,
    *,
    backend: str = ...,
    pre: Sequence[str] = ...,
    post: Sequence[str] = ...,
    model_dir: PathLike | None = ...,
    model: str | None = ...,
    threads: int | None = ...,
    quality: int = ...,
) -> bytes: ...


def colourise(
    image: np.ndarray | Image.Image | Photo | bytes | PathLike,
    *,
    backend: str = "auto",
    pre: Sequence[str] = (),
    post: Sequence[str] = (),
    model_dir: PathLike | None = None,
    model: str | None = None,
    threads: int | None = None,
    quality: int = 95,
) -> np.ndarray | Image.Image | Photo | bytes:
    """Colourise one photo and return it in the kind it was given (see
    :meth:`Colouriser.colourise`): an RGB array for a grey or RGB array (Pillow's channel
    order, not OpenCV's BGR), a PIL image for a PIL image, encoded bytes in the input's format
    for a path or bytes.

    Loads the backend on every call; for many photos, build one :class:`Colouriser`.
    """
    with Colouriser(
        backend,
        pre=pre,
        post=post,
        model_dir=model_dir,
        model=model,
        threads=threads,
        quality=quality,
    ) as colouriser:
        return colouriser.colourise(image)


def read_photo(
    source: bytes | PathLike, *, limits: Limits | None = None, name: str = "<bytes>"
) -> Photo:
    """Decode a photo file (or its encoded bytes) as ``coloi run`` does: checked to be a
    complete, single picture within ``limits`` (default :class:`coloi.Limits`), EXIF
    orientation applied (the pixels are upright), its EXIF and ICC profile kept for
    :func:`write_photo`. ``name`` is what errors call encoded bytes (an upload's file name,
    say); it is never opened.

    The pixels of the :class:`coloi.Photo` are in OpenCV's BGR order; ``photo.rgb`` gives
    Pillow's RGB. Raises :class:`coloi.UnreadablePhoto` naming the file and the reason.
    """
    limits = limits or Limits()
    if isinstance(source, bytes | bytearray | memoryview):
        return decode_photo(bytes(source), name, limits)
    return _read_file_photo(Path(source), limits)


def encode_photo(
    photo: Photo, format: str | None = None, *, quality: int = 95, name: str = "<photo>"
) -> bytes:
    """``photo`` encoded as :func:`write_photo` writes it, in memory: ``format`` (jpeg, png,
    tiff, webp or bmp) defaults to the photo's own (GIF gives PNG); 16-bit pixels stay 16-bit
    in PNG and TIFF; EXIF and an RGB ICC profile are carried over.

    Raises :class:`coloi.PhotoError` naming ``name`` when the format cannot hold the photo (a
    WebP over 16383 pixels on a side), :class:`coloi.ColoiError` for an unknown format.
    """
    chosen = format or _OUTPUT_FORMAT.get(photo.format, "png")
    if chosen not in FORMAT_SUFFIX:
        raise ColoiError(
            f"{name}: unknown output format {chosen!r} (choose from {', '.join(FORMAT_SUFFIX)})"
        )
    try:
        return _encode_pixels(photo.pixels, chosen, photo.exif, photo.icc_profile, quality)
    except (ValueError, OSError) as error:
        raise PhotoError(name, f"cannot encode it as {chosen.upper()} ({error})") from None


def write_photo(
    photo: Photo,
    path: PathLike,
    *,
    format: str | None = None,
    quality: int = 95,
    overwrite: bool = False,
) -> Path:
    """Write ``photo`` to ``path`` as ``coloi run`` writes its outputs: atomically (a
    temporary file, then a rename), never replacing a file unless ``overwrite``, with its EXIF
    and RGB ICC profile. ``format`` (jpeg, png, tiff, webp or bmp) defaults to the one the
    suffix names. 16-bit pixels stay 16-bit in PNG and TIFF. Returns the path.

    Raises :class:`coloi.OutputExists` or :class:`coloi.UnwritableOutput` naming the file.
    """
    target = Path(path)
    chosen: str | None = format or SUFFIX_FORMAT.get(target.suffix.lower())
    if chosen not in FORMAT_SUFFIX:
        raise ColoiError(
            f"{target}: unknown output format {format or target.suffix!r} "
            f"(choose from {', '.join(FORMAT_SUFFIX)})"
        )
    assert chosen is not None
    data = encode_photo(photo, chosen, quality=quality, name=str(target))
    write_atomically(target, data, overwrite=overwrite)
    return target
