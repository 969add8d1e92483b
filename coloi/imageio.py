"""Reading and writing photos: formats, bit depths, EXIF orientation, metadata, integrity.

Pixels are decoded with OpenCV (fast, 16-bit aware); Pillow reads only the header (size,
format, EXIF, ICC profile) and encodes 8-bit outputs, since it can carry EXIF and ICC profiles.
Every failure is a :class:`~coloi.errors.PhotoError` naming the file and the reason.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from coloi.errors import OutputExists, PhotoTooLarge, UnreadablePhoto, UnwritableOutput

# We enforce our own pixel limit (Limits.max_pixels) before decoding.
Image.MAX_IMAGE_PIXELS = None

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"})
FORMAT_SUFFIX = {"jpeg": ".jpg", "png": ".png", "tiff": ".tif", "webp": ".webp", "bmp": ".bmp"}
_PIL_FORMAT = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "TIFF": "tiff", "WEBP": "webp",
               "BMP": "bmp"}
_SIXTEEN_BIT_FORMATS = frozenset({"png", "tiff"})
ORIENTATION_TAG = 0x0112
# TIFF tags that describe a file's own pixel layout. A TIFF's "EXIF" as Pillow reads it is its
# whole first IFD, so these must not be carried into another file.
_LAYOUT_TAGS = frozenset({254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280,
                          281, 284, 290, 291, 317, 318, 319, 320, 321, 322, 323, 324, 325, 338,
                          339, 340, 341, 530, 531, 532, 34675})


@dataclass(frozen=True)
class Limits:
    """Refuse inputs above these sizes before decoding them (image bombs, runaway memory)."""

    max_pixels: int = 100_000_000
    max_bytes: int = 1 << 30


@dataclass
class Photo:
    """A decoded photo, upright (EXIF orientation applied).

    ``pixels`` is uint8 or uint16: (H, W) grey, (H, W, 3) BGR or (H, W, 4) BGRA. ``exif`` has
    its orientation reset to 1, since the pixels are now upright.
    """

    pixels: np.ndarray
    format: str
    exif: bytes | None = None
    icc_profile: bytes | None = None

    @property
    def bit_depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8


def _format_by_signature(data: bytes) -> str | None:
    """The format a file's first bytes claim, to tell 'broken image' from 'not an image'."""
    signatures = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png", b"II*\x00": "tiff",
                  b"MM\x00*": "tiff", b"BM": "bmp", b"GIF8": "gif"}
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((fmt for sig, fmt in signatures.items() if data.startswith(sig)), None)


def _check_complete(path: Path, data: bytes, fmt: str, header: Image.Image) -> None:
    """Catch truncated files, which some decoders (libjpeg) silently fill with grey."""
    truncated = False
    if fmt == "jpeg":
        # Entropy-coded data cannot hold 0xFFD9, so EOI must follow the last start of scan.
        truncated = data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")
    elif fmt == "png":
        truncated = b"IEND" not in data[-256:]
    elif fmt == "webp":
        truncated = len(data) < struct.unpack("<I", data[4:8])[0] + 8
    elif fmt == "tiff":
        tags = getattr(header, "tag_v2", {})
        offsets = tags.get(273) or tags.get(324) or ()
        counts = tags.get(279) or tags.get(325) or ()
        ends = [o + c for o, c in zip(offsets, counts, strict=False)]
        truncated = bool(ends) and max(ends) > len(data)
    elif fmt == "bmp":
        declared = struct.unpack("<I", data[2:6])[0]
        truncated = declared > len(data)
    if truncated:
        raise UnreadablePhoto(path, f"truncated {fmt.upper()} file")


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
        return (np.clip(pixels, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
    raise UnreadablePhoto(path, f"unsupported sample type {pixels.dtype}")


def read_photo(path: Path, limits: Limits = Limits()) -> Photo:
    """Decode ``path`` after checking it is a complete image within ``limits``."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise UnreadablePhoto(path, "not a regular file")
        if size == 0:
            raise UnreadablePhoto(path, "empty file")
        if size > limits.max_bytes:
            raise PhotoTooLarge(path, f"file of {size:,} bytes is over the limit of "
                                      f"{limits.max_bytes:,}")
        data = path.read_bytes()
    except FileNotFoundError:
        raise UnreadablePhoto(path, "no such file") from None
    except PermissionError:
        raise UnreadablePhoto(path, "permission denied") from None
    except IsADirectoryError:
        raise UnreadablePhoto(path, "is a folder") from None
    except OSError as error:
        raise UnreadablePhoto(path, f"cannot read ({error.strerror or error})") from None

    try:
        header = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        known = _format_by_signature(data)
        reason = (f"corrupt or truncated {known.upper()} file" if known
                  else "not an image, or an unsupported format")
        raise UnreadablePhoto(path, reason) from None
    fmt = _PIL_FORMAT.get(header.format or "")
    if fmt is None:
        raise UnreadablePhoto(path, f"unsupported format {header.format}")
    width, height = header.size
    if width * height > limits.max_pixels:
        raise PhotoTooLarge(path, f"{width}x{height} pixels is over the limit of "
                                  f"{limits.max_pixels:,} pixels")
    _check_complete(path, data, fmt, header)

    try:
        exif = header.getexif()
        icc = header.info.get("icc_profile")
    except Exception:  # noqa: BLE001 - broken metadata must not lose the photo itself
        exif, icc = Image.Exif(), None
    orientation = exif.get(ORIENTATION_TAG, 1) if exif else 1

    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        raise UnreadablePhoto(path, f"corrupt {fmt.upper()} data")
    pixels = _normalise_depth(path, pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 2:  # grey + alpha
        pixels = cv2.cvtColor(pixels[:, :, 0], cv2.COLOR_GRAY2BGR)
    pixels = _upright(pixels, int(orientation) if isinstance(orientation, int) else 1)
    exif_bytes = None
    for tag in _LAYOUT_TAGS & set(exif):
        del exif[tag]
    if exif:
        exif[ORIENTATION_TAG] = 1
        exif_bytes = exif.tobytes()
    return Photo(pixels, fmt, exif_bytes, icc if isinstance(icc, bytes) else None)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def _png_with_metadata(png: bytes, exif: bytes | None, icc: bytes | None) -> bytes:
    """Insert iCCP and eXIf chunks right after IHDR (OpenCV's PNG writer cannot)."""
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc))
    if exif:
        extra += _png_chunk(b"eXIf", exif.removeprefix(b"Exif\x00\x00"))
    ihdr_end = 8 + 8 + 13 + 4
    return png[:ihdr_end] + extra + png[ihdr_end:]


def encode_photo(pixels: np.ndarray, fmt: str, exif: bytes | None = None,
                 icc_profile: bytes | None = None, quality: int = 95) -> bytes:
    """Encode uint8/uint16 BGR or BGRA pixels. 16 bits are kept for PNG and TIFF only."""
    if pixels.dtype == np.uint16 and fmt in _SIXTEEN_BIT_FORMATS:
        # Uncompressed TIFF, as archives keep masters; deflating 72 MB takes seconds.
        params = ([cv2.IMWRITE_PNG_COMPRESSION, 3] if fmt == "png"
                  else [cv2.IMWRITE_TIFF_COMPRESSION, 1])
        ok, buffer = cv2.imencode(FORMAT_SUFFIX[fmt], pixels, params)
        if not ok:
            raise ValueError(f"OpenCV could not encode a 16-bit {fmt}")
        encoded = buffer.tobytes()
        # OpenCV's TIFF writer takes no metadata; 16-bit TIFFs lose EXIF and ICC (noted in docs).
        return _png_with_metadata(encoded, exif, icc_profile) if fmt == "png" else encoded
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    if fmt == "jpeg" and pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]  # JPEG has no alpha
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


@functools.cache
def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def write_atomically(path: Path, data: bytes, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` all at once: a hidden temporary file in the same folder, then
    a rename. Without ``overwrite`` an existing file is never replaced, even in a race."""
    if not overwrite and path.exists():
        raise OutputExists(path, "output already exists (use --overwrite to replace it)")
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".coloi-partial")
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if overwrite:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)  # fails if path appeared meanwhile
            except FileExistsError:
                raise OutputExists(path, "output already exists "
                                         "(use --overwrite to replace it)") from None
            except OSError:  # filesystems without hard links
                if path.exists():
                    raise OutputExists(path, "output already exists") from None
                os.replace(temporary, path)
    except OSError as error:
        raise UnwritableOutput(path, f"cannot write ({error.strerror or error})") from None
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
