"""Fuzzing the photo reader: whatever bytes a file holds, :func:`coloi.imageio.read_photo`
returns a valid Photo or raises UnreadablePhoto (PhotoTooLarge is one), quickly.

Bounded so that the whole file runs in well under 20 s: small seeds, a few hundred examples,
and an alarm that turns a hang into a failure instead of a stuck test run.
"""

from __future__ import annotations

import io
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from coloi.errors import UnreadablePhoto
from coloi.imageio import Limits, Photo, read_photo
from tests.conftest import natural_photo

# Pillow warns about the damaged metadata it skips; the reader's result is what is tested.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
# Small limits keep a mutated header that claims a huge size from costing real memory.
LIMITS = Limits(max_pixels=4_000_000, max_bytes=1 << 20)
HANG_SECONDS = 5


def _encoded(fmt: str, mode: str = "RGB", frames: int = 1, **options: object) -> bytes:
    images = [
        Image.fromarray(natural_photo(24, 32, seed)[:, :, ::-1]).convert(mode)
        for seed in range(frames)
    ]
    buffer = io.BytesIO()
    images[0].save(buffer, format=fmt, save_all=frames > 1, append_images=images[1:], **options)
    return buffer.getvalue()


def _grey16_png() -> bytes:
    buffer = io.BytesIO()
    ramp = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80
    Image.fromarray(ramp).save(buffer, format="PNG")
    return buffer.getvalue()


# An EXIF block with orientation 1 (a tag to parse, no rotation to account for).
EXIF = (
    b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00"
    b"\x01\x00\x00\x00\x00\x00\x00\x00"
)
SEEDS = {
    "jpeg": _encoded("JPEG", exif=EXIF),
    "jpeg-progressive": _encoded("JPEG", "L", progressive=True),
    "png": _encoded("PNG"),
    "png-palette": _encoded("PNG", "P", transparency=0),
    "png-16": _grey16_png(),
    "tiff": _encoded("TIFF"),
    "tiff-deflate": _encoded("TIFF", "L", compression="tiff_deflate"),
    "tiff-cmyk": _encoded("TIFF", "CMYK"),
    "webp": _encoded("WEBP", quality=80),
    "webp-lossless": _encoded("WEBP", "RGBA", lossless=True),
    "bmp": _encoded("BMP"),
    "gif": _encoded("GIF", "P"),
}
# Files read_photo refuses as they are (several pictures); mutated, they exercise the counting.
REFUSED = {
    "tiff-pages": _encoded("TIFF", frames=2),
    "gif-animated": _encoded("GIF", "P", frames=2),
    "png-animated": _encoded("PNG", frames=2),
}


ALL_SEEDS = SEEDS | REFUSED


@contextmanager
def _no_hang(seconds: int) -> Iterator[None]:
    """Fail instead of hanging (the alarm raises in the main thread, where pytest runs)."""

    def expire(signum: int, frame: object) -> None:
        raise AssertionError(f"read_photo took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _check(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.img"
        path.write_bytes(data)
        try:
            with _no_hang(HANG_SECONDS):
                photo = read_photo(path, LIMITS)
        except UnreadablePhoto as error:
            assert error.path == path and error.reason
            assert "\n" not in str(error)
            return
        assert path.read_bytes() == data  # reading never changes the file
    assert isinstance(photo, Photo)
    pixels = photo.pixels
    assert pixels.dtype in (np.uint8, np.uint16)
    assert pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4))
    assert pixels.size > 0 and pixels.shape[0] * pixels.shape[1] <= LIMITS.max_pixels


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid file with a few bytes changed, cut short, inserted or removed."""
    data = bytearray(ALL_SEEDS[draw(st.sampled_from(sorted(ALL_SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        # Headers are where parsers go wrong, so positions favour the first bytes.
        limit = len(data) - 1 if draw(st.booleans()) else min(len(data) - 1, 64)
        at = draw(st.integers(0, max(0, limit)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01]))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


FUZZ = settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize("name", sorted(ALL_SEEDS))
def test_seeds(name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"seed.{name}"
        path.write_bytes(ALL_SEEDS[name])
        if name in REFUSED:
            with pytest.raises(UnreadablePhoto, match="coloi reads single pictures only"):
                read_photo(path, LIMITS)
        else:
            assert read_photo(path, LIMITS).pixels.shape[:2] == (24, 32)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    _check(data)


@FUZZ
@given(st.sampled_from(sorted(ALL_SEEDS)), st.binary(max_size=512))
def test_valid_signature_then_random_bytes(name: str, tail: bytes) -> None:
    _check(ALL_SEEDS[name][:16] + tail)


@pytest.mark.slow
@settings(FUZZ, max_examples=800)
@given(mutated())
def test_mutated_valid_files(data: bytes) -> None:
    _check(data)
