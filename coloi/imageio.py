"""Reading and writing photos: formats, bit depths, EXIF orientation, metadata, integrity.

Pixels are decoded with OpenCV (fast, 16-bit aware); Pillow reads only the header (size,
format, frames, EXIF, ICC profile), decodes the few layouts OpenCV gets wrong, and encodes 8-bit
outputs, since it can carry EXIF and ICC profiles.

Every file is untrusted: :func:`read_photo` checks size, completeness and structure before a
decoder sees the pixels, and whatever a decoder raises on damaged bytes becomes an
:class:`~coloi.errors.UnreadablePhoto` naming the file and the reason (``tests/test_fuzz.py``
holds it to that).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import io
import os
import re
import secrets
import socket
import stat
import struct
import sys
import tempfile
import threading
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, PngImagePlugin

from coloi.errors import (
    ColoiError,
    MissingPhoto,
    NotAPhoto,
    OutputExists,
    PhotoTooLarge,
    UnreadablePhoto,
    UnwritableOutput,
)

# We enforce our own pixel limit (Limits.max_pixels) before decoding.
Image.MAX_IMAGE_PIXELS = None
# Pillow refuses a PNG chunk that inflates to over 1 MiB (as a decompression bomb), colour
# profiles included, and large scanner and printer profiles are bigger: a photo carrying one
# was "corrupt". 16 MiB still stops a bomb (text chunks stay bound by MAX_TEXT_MEMORY as well).
PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, 16 << 20)
# A damaged file gets one line from coloi naming it and the reason; the decoders' own warnings
# about it (OpenCV's log, Pillow's warnings about metadata we drop anyway) would only add
# unnamed lines to it. OPENCV_LOG_LEVEL still wins for whoever debugs OpenCV.
if "OPENCV_LOG_LEVEL" not in os.environ:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")

# Formats coloi reads and writes.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"})
# GIF is read but never written (256 colours cannot hold a colourised photo): its output is PNG.
READABLE_SUFFIXES = IMAGE_SUFFIXES | {".gif"}
FORMAT_SUFFIX = {"jpeg": ".jpg", "png": ".png", "tiff": ".tif", "webp": ".webp", "bmp": ".bmp"}
_PIL_FORMAT = {
    "JPEG": "jpeg",
    "MPO": "jpeg",
    "PNG": "png",
    "TIFF": "tiff",
    "WEBP": "webp",
    "BMP": "bmp",
    "GIF": "gif",
}
_SIXTEEN_BIT_FORMATS = frozenset({"png", "tiff"})
ORIENTATION_TAG = 0x0112
# TIFF tags that describe a file's own pixel layout. A TIFF's "EXIF" as Pillow reads it is its
# whole first IFD, so these must not be carried into another file.
_LAYOUT_TAGS = frozenset(
    {
        254,
        255,
        256,
        257,
        258,
        259,
        262,
        263,
        266,
        273,
        277,
        278,
        279,
        280,
        281,
        284,
        290,
        291,
        317,
        318,
        319,
        320,
        321,
        322,
        323,
        324,
        325,
        338,
        339,
        340,
        341,
        530,
        531,
        532,
        34675,
    }
)
# What decoders raise on damaged bytes (Pillow's plugins parse headers with struct and index
# into what they read; OpenCV raises cv2.error). Each means "this file cannot be read".
_DECODER_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
    RecursionError,
    Image.DecompressionBombError,
    cv2.error,
)


@dataclass(frozen=True)
class Limits:
    """Refuse inputs above these sizes before decoding them (image bombs, runaway memory).

    At the default pixel limit one photo needs at most about 1.7 GB (a 16-bit colour scan; an
    8-bit one about 0.8 GB), besides the file itself: ``--max-pixels`` in the README.
    """

    max_pixels: int = 60_000_000
    max_bytes: int = 1 << 30


@dataclass
class Photo:
    """A decoded photo, upright (EXIF orientation applied).

    ``pixels`` is uint8 or uint16: (H, W) grey, (H, W, 3) BGR or (H, W, 4) BGRA (OpenCV's
    channel order, not Pillow's: :attr:`rgb` gives RGB), with H and W at least 1. ``exif`` has
    its orientation reset to 1, since the pixels are now upright.
    """

    pixels: np.ndarray
    format: str
    exif: bytes | None = None
    icc_profile: bytes | None = None

    @property
    def bit_depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def rgb(self) -> np.ndarray:
        """The pixels in Pillow's channel order: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA."""
        if self.pixels.ndim == 2:
            return self.pixels
        code = cv2.COLOR_BGRA2RGBA if self.pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB
        return cv2.cvtColor(self.pixels, code)


def _format_by_signature(data: bytes) -> str | None:
    """The format a file's first bytes claim, to tell 'broken image' from 'not an image'."""
    signatures = {
        b"\xff\xd8\xff": "jpeg",
        b"\x89PNG\r\n\x1a\n": "png",
        b"II*\x00": "tiff",
        b"MM\x00*": "tiff",
        b"BM": "bmp",
        b"GIF8": "gif",
    }
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((fmt for sig, fmt in signatures.items() if data.startswith(sig)), None)


def _png_complete(data: bytes) -> bool:
    """Whether every chunk fits in the file, up to IEND. A chunk length past the end is not
    only a truncation: OpenCV's PNG reader allocates what a chunk declares (up to 4 GB, from a
    file of a few bytes), so no PNG reaches it unchecked."""
    position = 8
    while position + 12 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        position += 12 + length
        if kind == b"IEND":
            return position <= len(data)
    return False


def _check_complete(path: Path, data: bytes, fmt: str, header: Image.Image) -> None:
    """Catch truncated files, which some decoders (libjpeg) silently fill with grey."""
    truncated = False
    if fmt == "jpeg":
        # Entropy-coded data cannot hold 0xFFD9, so EOI must follow the last start of scan.
        truncated = data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")
    elif fmt == "png":
        truncated = not _png_complete(data)
    elif fmt == "webp":
        truncated = len(data) < struct.unpack("<I", data[4:8])[0] + 8
    elif fmt == "tiff":
        tags = getattr(header, "tag_v2", {})
        offsets = tags.get(273) or tags.get(324) or ()
        counts = tags.get(279) or tags.get(325) or ()
        ends = [int(o) + int(c) for o, c in zip(offsets, counts, strict=False)]
        truncated = bool(ends) and max(ends) > len(data)
    elif fmt == "bmp":
        declared = struct.unpack("<I", data[2:6])[0]
        truncated = declared > len(data)
    if truncated:
        raise UnreadablePhoto(path, f"truncated {fmt.upper()} file")


# A TIFF is a chain of IFDs, one per picture (page, reduced copy or mask). Pillow counts pages
# by walking the chain in time that grows with the square of its length (minutes for a crafted
# chain of 200,000), and turns each strip or tile into Python objects as it opens a page (GBs
# for millions of them), so both are bounded first, by a walk over the file's own bytes.
MAX_TIFF_IFDS = 64
MAX_TIFF_STRIPS = 1 << 18
_STRIP_OFFSET_TAGS = (273, 324)  # StripOffsets, TileOffsets


def _check_tiff_structure(path: Path, data: bytes) -> None:
    """Refuse a TIFF whose IFD chain loops, is longer than :data:`MAX_TIFF_IFDS`, or whose
    pictures are cut into more than :data:`MAX_TIFF_STRIPS` strips or tiles. Damage of other
    kinds (an offset past the end) is left for the decoder to report."""
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(order + "H", data[2:4])[0] == 43  # BigTIFF: 8-byte counts, offsets
    width = order + ("u8" if big else "u4")  # BigTIFF's counts and values are 8 bytes
    entry = np.dtype(
        [("tag", order + "u2"), ("type", order + "u2"), ("count", width), ("value", width)]
    )
    if big:
        offset, count_format, next_format = struct.unpack(order + "Q", data[8:16])[0], "Q", "Q"
    else:
        offset, count_format, next_format = struct.unpack(order + "I", data[4:8])[0], "H", "I"
    count_size, next_size = struct.calcsize(count_format), struct.calcsize(next_format)
    seen: set[int] = set()
    while offset:
        if offset in seen:
            raise UnreadablePhoto(path, "corrupt TIFF file: its chain of pages loops")
        if len(seen) == MAX_TIFF_IFDS:
            raise UnreadablePhoto(
                path, f"TIFF file of over {MAX_TIFF_IFDS} pages: coloi reads single pictures only"
            )
        seen.add(offset)
        if offset + count_size > len(data):
            return
        entries = struct.unpack(order + count_format, data[offset : offset + count_size])[0]
        start = offset + count_size
        end = start + entries * entry.itemsize
        if end + next_size > len(data):
            return
        table = np.frombuffer(data, entry, count=entries, offset=start)
        strips = table["count"][np.isin(table["tag"], _STRIP_OFFSET_TAGS)]
        if strips.size and int(strips.max()) > MAX_TIFF_STRIPS:
            raise PhotoTooLarge(
                path,
                f"TIFF picture cut into {int(strips.max()):,} strips or "
                f"tiles, over the limit of {MAX_TIFF_STRIPS:,}",
            )
        offset = struct.unpack(order + next_format, data[end : end + next_size])[0]


def _frame_count(header: Image.Image, fmt: str) -> int:
    """How many pictures the file holds: an animation's frames, or a TIFF's pages other than
    reduced-resolution copies and masks. A JPEG counts as one: the extra pictures of an MPO
    (previews, depth maps) come after the photo itself, which is what OpenCV decodes."""
    count = int(getattr(header, "n_frames", 1))
    if fmt == "jpeg" or count == 1:
        return 1
    if fmt != "tiff":
        return count
    pages = 0
    for index in range(count):
        header.seek(index)
        # NewSubfileType: bit 0 a reduced-resolution copy, bit 2 a transparency mask.
        pages += not int(getattr(header, "tag_v2", {}).get(254, 0)) & 0b101
    header.seek(0)
    return pages


def _has_alpha(header: Image.Image) -> bool:
    return bool({"A", "a"} & set(header.getbands())) or "transparency" in header.info


def _decoded_by_pillow(header: Image.Image, fmt: str) -> bool:
    """The layouts OpenCV gets wrong: GIF (which it may not read at all), and 8-bit TIFF with
    unassociated alpha, which libtiff's RGBA interface premultiplies, darkening every
    translucent pixel. Pillow reads both exactly."""
    if fmt == "gif":
        return True
    if fmt != "tiff" or header.mode not in ("RGBA", "LA"):
        return False
    tags = getattr(header, "tag_v2", {})
    return tuple(tags.get(338, ())) == (2,) and set(tags.get(258, (8,))) == {8}


# libjpeg does not fail on damaged entropy-coded data: it warns on stderr ("Corrupt JPEG data:
# premature end of data segment") and fills the rest with grey, which would be colourised and
# "done". Its warnings are caught while a JPEG decodes and become the reason it is refused.
_JPEG_DAMAGE = ("Corrupt JPEG data", "Premature end of JPEG file")
# Junk before the end-of-image marker, which many cameras write, loses no pixel.
_JPEG_HARMLESS = "extraneous bytes before marker 0xd9"
_stderr_lock = threading.Lock()
_stderr_capture: list[io.BufferedRandom] = []


def _opencv_decode(path: Path, data: bytes, fmt: str) -> np.ndarray | None:
    buffer = np.frombuffer(data, np.uint8)
    if fmt != "jpeg":
        return cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    with _stderr_lock:  # file descriptor 2 is the process's: one capture at a time
        if not _stderr_capture:
            # Kept open for the process's life, reused by every JPEG (nothing to close per file).
            _stderr_capture.append(tempfile.TemporaryFile())  # noqa: SIM115
        capture = _stderr_capture[0]
        capture.seek(0)
        capture.truncate()
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        lines = capture.read().decode("utf-8", "replace").splitlines()
    damage = [
        line for line in lines if line.startswith(_JPEG_DAMAGE) and _JPEG_HARMLESS not in line
    ]
    others = [line for line in lines if not line.startswith(_JPEG_DAMAGE)]
    if others:  # not libjpeg's about this photo (another thread's): passed on as it was
        os.write(2, ("\n".join(others) + "\n").encode())
    if damage:
        raise UnreadablePhoto(
            path,
            f"corrupt JPEG data, part of the picture is missing (libjpeg: {damage[0].strip()})",
        )
    return decoded


def _pillow_pixels(header: Image.Image) -> np.ndarray:
    header.seek(0)
    if _has_alpha(header):
        return cv2.cvtColor(np.asarray(header.convert("RGBA")), cv2.COLOR_RGBA2BGRA)
    return cv2.cvtColor(np.asarray(header.convert("RGB")), cv2.COLOR_RGB2BGR)


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) so the pixels are as the camera's user saw them."""
    if orientation == 2:
        return cv2.flip(pixels, 1)
    if orientation == 3:
        return cv2.rotate(pixels, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(pixels, 0)
    if orientation == 5:
        return cv2.transpose(pixels)
    if orientation == 6:
        return cv2.rotate(pixels, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.transpose(pixels), -1)
    if orientation == 8:
        return cv2.rotate(pixels, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return pixels


def _normalise_depth(path: Path, pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype in (np.uint8, np.uint16):
        return pixels
    if pixels.dtype in (np.float32, np.float64):
        return (np.clip(np.nan_to_num(pixels), 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
    raise UnreadablePhoto(path, f"unsupported sample type {pixels.dtype}")


def _normalise_channels(path: Path, pixels: np.ndarray, alpha: bool) -> np.ndarray:
    """Grey, BGR or BGRA. A fourth channel the file does not call alpha (OpenCV gives CMYK and
    RGBX TIFFs one, made up or garbage) is dropped."""
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    elif pixels.ndim == 3 and pixels.shape[2] == 2:  # grey + alpha
        grey = pixels[:, :, 0]
        pixels = cv2.merge([grey, grey, grey, pixels[:, :, 1]])
    if pixels.ndim == 3 and pixels.shape[2] == 4 and not alpha:
        pixels = np.ascontiguousarray(pixels[:, :, :3])
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)):
        raise UnreadablePhoto(path, f"unsupported layout of {pixels.shape[-1]} channels")
    return pixels


def _metadata(header: Image.Image) -> tuple[int, bytes | None, bytes | None]:
    """Orientation, EXIF (orientation reset, layout tags removed) and ICC profile. Damaged
    metadata is dropped, never the photo: an orientation or profile that cannot be read is
    left out, and the photo is done without it."""
    orientation, exif_bytes, icc = 1, None, None
    try:
        icc = header.info.get("icc_profile")
        exif = header.getexif()
        value = exif.get(ORIENTATION_TAG, 1)
        orientation = value if isinstance(value, int) and 1 <= value <= 8 else 1
        for tag in _LAYOUT_TAGS & set(exif):
            del exif[tag]
        if exif:
            exif[ORIENTATION_TAG] = 1
            exif_bytes = exif.tobytes()
    except ColoiError:
        raise  # a time limit expiring here is not damaged metadata
    except Exception:  # noqa: BLE001 - Pillow's EXIF parser raises anything on damaged tags
        exif_bytes = None
    return orientation, exif_bytes, icc if isinstance(icc, bytes) and icc else None


def _read_file(path: Path, limits: Limits) -> bytes:
    """The file's bytes, checked and read through one descriptor, so that what is checked is
    what is read even if the path changes meanwhile."""
    try:
        # O_NONBLOCK: a FIFO named like a photo must not block us until someone writes to it.
        descriptor = os.open(
            path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        )
    except FileNotFoundError:
        raise MissingPhoto(path, "no such file") from None
    except PermissionError:
        raise UnreadablePhoto(path, "permission denied") from None
    except OSError as error:
        raise UnreadablePhoto(path, f"cannot read ({error.strerror or error})") from None
    try:
        with open(descriptor, "rb") as stream:
            info = os.fstat(descriptor)
            if stat.S_ISDIR(info.st_mode):
                raise UnreadablePhoto(path, "is a folder")
            if not stat.S_ISREG(info.st_mode):
                raise UnreadablePhoto(path, "not a regular file")
            if info.st_size > limits.max_bytes:
                raise PhotoTooLarge(
                    path,
                    f"file of {info.st_size:,} bytes is over the limit "
                    f"of {limits.max_bytes:,} bytes",
                )
            # One byte over the limit tells a file that grew while we read it.
            data = stream.read(limits.max_bytes + 1)
    except OSError as error:
        raise UnreadablePhoto(path, f"cannot read ({error.strerror or error})") from None
    if not data:
        raise UnreadablePhoto(path, "empty file")
    if len(data) > limits.max_bytes:
        raise PhotoTooLarge(path, f"file is over the limit of {limits.max_bytes:,} bytes")
    return data


def read_photo(path: Path, limits: Limits = Limits()) -> Photo:
    """Decode ``path`` after checking it is a complete, single image within ``limits``.

    Raises UnreadablePhoto (MissingPhoto, PhotoTooLarge) naming the file and the reason, for
    any content whatever; the file is only read. Animated and multi-page files are refused
    rather than reduced to their first picture, which would silently lose the rest.
    """
    return decode_photo(_read_file(path, limits), path, limits)


def decode_photo(data: bytes, path: Path | str = "<bytes>", limits: Limits = Limits()) -> Photo:
    """Decode an encoded photo held in memory, with the checks of :func:`read_photo`;
    ``path`` only names it in errors."""
    path = Path(path)
    if not data:
        raise UnreadablePhoto(path, "empty file")
    if len(data) > limits.max_bytes:
        raise PhotoTooLarge(
            path, f"{len(data):,} bytes is over the limit of {limits.max_bytes:,} bytes"
        )
    try:
        return _decode(path, data, limits)
    except MemoryError:
        raise UnreadablePhoto(path, "not enough memory to decode it") from None
    except _DECODER_ERRORS:
        known = _format_by_signature(data)
        if known is None:
            raise NotAPhoto(path, "not an image, or an unsupported format") from None
        raise UnreadablePhoto(path, f"corrupt or truncated {known.upper()} file") from None


def _decode(path: Path, data: bytes, limits: Limits) -> Photo:
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        _check_tiff_structure(path, data)
    header = Image.open(io.BytesIO(data))
    fmt = _PIL_FORMAT.get(header.format or "")
    if fmt is None:
        raise NotAPhoto(path, f"unsupported format {header.format}")
    width, height = header.size
    if width < 1 or height < 1:
        raise UnreadablePhoto(
            path, f"corrupt {fmt.upper()} file: it claims {width}x{height} pixels"
        )
    if width * height > limits.max_pixels:
        raise PhotoTooLarge(
            path, f"{width}x{height} pixels is over the limit of {limits.max_pixels:,} pixels"
        )
    _check_complete(path, data, fmt, header)
    frames = _frame_count(header, fmt)
    if frames > 1:
        kind = (
            f"multi-page TIFF ({frames} pages)"
            if fmt == "tiff"
            else f"animated {fmt.upper()} ({frames} frames)"
        )
        raise UnreadablePhoto(
            path, f"{kind}: coloi reads single pictures only; save the one to colourise on its own"
        )
    if header.mode == "LAB":
        raise UnreadablePhoto(path, "CIE L*a*b* TIFF is not supported; save it as RGB")

    decoded: np.ndarray | None
    if _decoded_by_pillow(header, fmt):
        decoded = _pillow_pixels(header)
    else:
        decoded = _opencv_decode(path, data, fmt)
    if decoded is None or decoded.size == 0:
        raise UnreadablePhoto(path, f"corrupt {fmt.upper()} data")
    pixels = _normalise_channels(path, _normalise_depth(path, decoded), _has_alpha(header))
    if pixels.shape[:2] != (height, width):  # the header and the pixels disagree
        raise UnreadablePhoto(
            path,
            f"corrupt {fmt.upper()} file: {width}x{height} pixels "
            f"declared, {pixels.shape[1]}x{pixels.shape[0]} decoded",
        )
    # After the pixels: _metadata edits the EXIF that Pillow consults as it loads them.
    orientation, exif, icc = _metadata(header)
    if fmt == "tiff":
        orientation = 1  # OpenCV and Pillow both apply a TIFF's own orientation tag already
    return Photo(_upright(pixels, orientation), fmt, exif, icc)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body))
        + kind
        + body
        + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


def _png_with_metadata(png: bytes, exif: bytes | None, icc: bytes | None) -> bytes:
    """Insert iCCP and eXIf chunks right after IHDR (OpenCV's PNG writer cannot)."""
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc))
    if exif:
        extra += _png_chunk(b"eXIf", exif.removeprefix(b"Exif\x00\x00"))
    ihdr_end = 8 + 8 + 13 + 4
    return png[:ihdr_end] + extra + png[ihdr_end:]


def _rgb_profile(icc_profile: bytes | None) -> bytes | None:
    """The profile, unless its header says it describes other than RGB data: an output is
    always colour, so the grey or CMYK profile of a grey or CMYK input would tell viewers to
    misread it."""
    if icc_profile and icc_profile[36:40] == b"acsp" and icc_profile[16:20] != b"RGB ":
        return None
    return icc_profile


_MAX_SEGMENT = 65533  # bytes of payload a JPEG marker segment can hold
_ICC_CHUNK = _MAX_SEGMENT - 14  # less the "ICC_PROFILE\0", sequence and count bytes


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _jpeg_with_metadata(jpeg: bytes, exif: bytes | None, icc: bytes | None) -> bytes:
    """Insert EXIF (APP1) and an ICC profile (APP2, chunked) after the JFIF header."""
    extra = b""
    if exif:
        payload = exif if exif.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + exif
        extra += _jpeg_segment(0xE1, payload)
    if icc:
        chunks = [icc[i : i + _ICC_CHUNK] for i in range(0, len(icc), _ICC_CHUNK)]
        for number, chunk in enumerate(chunks, start=1):
            extra += _jpeg_segment(0xE2, b"ICC_PROFILE\x00" + bytes([number, len(chunks)]) + chunk)
    position = 2
    if jpeg[2:4] == b"\xff\xe0":  # keep JFIF's APP0 first, as readers expect
        position = 4 + int.from_bytes(jpeg[4:6], "big")
    return jpeg[:position] + extra + jpeg[position:]


def encode_photo(
    pixels: np.ndarray,
    fmt: str,
    exif: bytes | None = None,
    icc_profile: bytes | None = None,
    quality: int = 95,
) -> bytes:
    """Encode uint8/uint16 BGR or BGRA pixels. 16 bits are kept for PNG and TIFF only.

    Raises ValueError or OSError when the format cannot hold the photo (a WebP over 16383
    pixels on a side, for one).
    """
    icc_profile = _rgb_profile(icc_profile)
    if pixels.dtype == np.uint16 and fmt in _SIXTEEN_BIT_FORMATS:
        # Uncompressed TIFF, as archives keep masters; deflating 72 MB takes seconds.
        params = (
            [cv2.IMWRITE_PNG_COMPRESSION, 3] if fmt == "png" else [cv2.IMWRITE_TIFF_COMPRESSION, 1]
        )
        try:
            ok, buffer = cv2.imencode(FORMAT_SUFFIX[fmt], pixels, params)
        except cv2.error:
            ok = False
        if not ok:
            raise ValueError(f"OpenCV could not encode a 16-bit {fmt}")
        encoded = buffer.tobytes()
        # OpenCV's TIFF writer takes no metadata; 16-bit TIFFs lose EXIF and ICC (noted in docs).
        return _png_with_metadata(encoded, exif, icc_profile) if fmt == "png" else encoded
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    if fmt == "jpeg" and pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]  # JPEG has no alpha
    if fmt == "jpeg" and len(exif or b"") <= _MAX_SEGMENT:
        # OpenCV encodes a large JPEG in half Pillow's time (no RGB copy); metadata is
        # spliced in as the APP1/APP2 segments Pillow would have written.
        ok, buffer = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            return _jpeg_with_metadata(buffer.tobytes(), exif, icc_profile)
    code = cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB
    image = Image.fromarray(cv2.cvtColor(pixels, code))
    options: dict[str, object] = {}
    if exif and fmt in ("jpeg", "png", "tiff", "webp"):
        options["exif"] = exif
    if icc_profile and fmt in ("jpeg", "png", "tiff", "webp"):
        options["icc_profile"] = icc_profile
    if fmt in ("jpeg", "webp"):
        options["quality"] = quality
    if fmt == "png":
        options["compress_level"] = 3
    out = io.BytesIO()
    image.save(out, format=fmt.upper(), **options)
    return out.getvalue()


PARTIAL_SUFFIX = ".coloi-partial"
# A partial's name says which process on which machine writes it, so that a later run can
# tell one left by a killed process (removed) from one a live run is writing (never touched).
_PARTIAL = re.compile(
    r"^\..*\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}" + re.escape(PARTIAL_SUFFIX) + "$"
)
# Partials of coloi before they were named so, which no live run still writes after a day.
_UNNAMED_PARTIAL_AGE = 24 * 3600.0
_cleaned_folders: set[tuple[int, int]] = set()
_cleaned_lock = threading.Lock()


@functools.cache
def _host() -> str:
    return f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFFFFFF:08x}"


def _partial_prefix(path: Path) -> str:
    # Part of the name only: the whole of a long one (up to 255 bytes) plus the marks would be
    # over the filesystem's limit. The hash of the whole name tells apart two long names that
    # share their start, so that one's leftovers are found without the other's.
    digest = hashlib.sha1(path.name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f".{path.name[:40]}.{digest}."


def _partial_name(path: Path) -> str:
    return f"{_partial_prefix(path)}{_host()}-{os.getpid()}-{secrets.token_hex(4)}{PARTIAL_SUFFIX}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process, or a number no process can have: leave it
    return True


def _remove_stale_partials(folder: int) -> None:
    """Delete, once per folder and process, the partials a killed coloi left in ``folder``
    (an open descriptor): those of a process of this machine that no longer runs, and unnamed
    ones a day old. Their outputs were never renamed into place; the photos are done again."""
    info = os.fstat(folder)
    with _cleaned_lock:
        if (info.st_dev, info.st_ino) in _cleaned_folders:
            return
        _cleaned_folders.add((info.st_dev, info.st_ino))
    now = time.time()
    with os.scandir(folder) as entries:
        names = [
            e.name for e in entries if e.name.startswith(".") and e.name.endswith(PARTIAL_SUFFIX)
        ]
    for name in names:
        match = _PARTIAL.match(name)
        try:
            if match is not None:
                stale = match["host"] == _host() and not _alive(int(match["pid"]))
            else:
                stale = (
                    now - os.stat(name, dir_fd=folder, follow_symlinks=False).st_mtime
                    > _UNNAMED_PARTIAL_AGE
                )
            if stale:
                os.unlink(name, dir_fd=folder)
        except OSError:
            continue  # gone meanwhile, or not ours to remove


def remove_partial_writes(path: Path) -> None:
    """Delete the temporary files that writes of ``path`` by :func:`write_atomically` left
    when their process was killed (a Ray worker that died mid-photo). Only for a path that
    nothing is writing now: a live write's temporary file would be taken from under it."""
    with contextlib.suppress(OSError):
        for partial in path.parent.glob(glob.escape(_partial_prefix(path)) + "*" + PARTIAL_SUFFIX):
            with contextlib.suppress(OSError):
                partial.unlink()


# The partial name write_atomically gives (_partial_name). Matched exactly, so that no other
# program's file (nor the daemon's journal) is taken for one.
_PARTIAL_NAME = re.compile(
    r"\..*\.[0-9a-f]{8}\.[0-9a-f]{8}-\d+-[0-9a-f]{8}" + re.escape(PARTIAL_SUFFIX), re.DOTALL
)


def remove_partial_writes_in(folder: Path) -> int:
    """Delete the temporary files that killed writes left in ``folder`` (not below it), and
    return how many. A partial that a live process of this machine is writing is left alone
    (another run into the same folder); one from another machine is taken for dead, so this
    is for a folder no other machine is writing into now."""
    removed = 0
    with contextlib.suppress(OSError), os.scandir(folder) as listing:
        for entry in listing:
            match = _PARTIAL.match(entry.name)
            live = match is not None and match["host"] == _host() and _alive(int(match["pid"]))
            if _PARTIAL_NAME.fullmatch(entry.name) and not live:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def write_atomically(path: Path, data: bytes, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` all at once: a hidden partial file in the same folder, then a
    rename. Without ``overwrite`` an existing file is never replaced, even in a race.

    The folder is opened once and every step names files relative to it, so a path longer
    than the system's limit (a tree thousands of folders deep) is written all the same, and
    partials a killed coloi left in the folder are removed first.
    """
    try:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise UnwritableOutput(path, f"cannot write ({error.strerror or error})") from None
    temporary = None
    try:
        if not overwrite and _exists_in(folder, path.name):
            raise OutputExists(path, "output already exists (use --overwrite to replace it)")
        _remove_stale_partials(folder)
        while temporary is None:
            name = _partial_name(path)
            try:
                # Mode 0666 less the umask, as any output; O_EXCL: never someone else's file.
                handle = os.open(
                    name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                    0o666,
                    dir_fd=folder,
                )
            except FileExistsError:
                continue
            temporary = name
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if overwrite:
            os.replace(temporary, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        else:
            try:  # fails if path appeared meanwhile
                os.link(temporary, path.name, src_dir_fd=folder, dst_dir_fd=folder)
            except FileExistsError:
                raise OutputExists(
                    path, "output already exists (use --overwrite to replace it)"
                ) from None
            except OSError:  # filesystems without hard links
                if _exists_in(folder, path.name):
                    raise OutputExists(path, "output already exists") from None
                os.replace(temporary, path.name, src_dir_fd=folder, dst_dir_fd=folder)
    except OSError as error:
        raise UnwritableOutput(path, f"cannot write ({error.strerror or error})") from None
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=folder)
        os.close(folder)


def _exists_in(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True
