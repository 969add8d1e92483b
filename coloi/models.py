"""The model manifest: which model files exist, what they are, and proof they are intact.

A model folder holds ``manifest.json`` and the files it lists. The default folder is the one
shipped with coloi (the ``models/`` folder of the source tree); ``--model-dir`` (or
``COLOI_MODEL_DIR``, resolved by :mod:`coloi.settings`) points at another folder with the same
layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from coloi.errors import ModelError

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ModelEntry:
    """One model file of a manifest. ``path`` has been checked against ``sha256``."""

    name: str
    format: str
    path: Path
    sha256: str
    input_size: int
    details: dict[str, Any] = field(default_factory=dict, compare=False)


def default_model_dir() -> Path:
    """The models shipped with coloi (``COLOI_MODEL_DIR`` reaches the CLI as ``--model-dir``)."""
    return Path(str(resources.files("coloi_models")))


def read_manifest(model_dir: Path) -> list[dict[str, Any]]:
    """The manifest's model entries, unverified, each an object whose ``name`` and ``format``
    are strings (what entries are chosen by)."""
    manifest = model_dir / MANIFEST
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["models"]
    except FileNotFoundError:
        raise ModelError(f"{manifest}: no model manifest in this folder") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelError(f"{manifest}: unreadable model manifest ({error})") from None
    if not isinstance(entries, list):
        raise ModelError(f"{manifest}: 'models' must be a list")
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise ModelError(
                f"{manifest}: model {number} must be an object with the fields "
                f"'name', 'format', 'file', 'sha256' and 'input_size', "
                f"not {entry!r:.60}"
            )
        for key in ("name", "format"):
            _field(manifest, number, entry, key, str)
    return entries


def _field(manifest: Path, number: int, entry: dict[str, Any], key: str, kind: type) -> Any:
    """``entry[key]``, which must be a non-empty ``kind`` (a positive one, for numbers)."""
    if key not in entry:
        raise ModelError(f"{manifest}: model {number} has no {key!r} field")
    value = entry[key]
    # bool is an int to Python, not to a manifest's reader.
    if (
        not isinstance(value, kind)
        or isinstance(value, bool)
        or not value
        or (isinstance(value, int) and value < 1)
    ):
        wanted = "a positive whole number" if kind is int else "a non-empty string"
        raise ModelError(
            f"{manifest}: model {number}: field {key!r} must be {wanted}, not {value!r:.60}"
        )
    return value


# Model files are read whole (to check their sha256, then to load them): only regular files,
# and none larger than any model coloi could run.
MAX_MODEL_BYTES = 4 << 30


def file_sha256(path: Path) -> str:
    """The sha256 of a regular file of at most :data:`MAX_MODEL_BYTES`; anything else (a
    device such as /dev/zero, a FIFO, a folder) raises :class:`ModelError` before a byte is
    read, where reading it would never end."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer.
        descriptor = os.open(
            path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        )
    except OSError as error:
        raise ModelError(f"{path}: cannot read model file ({error.strerror or error})") from None
    with open(descriptor, "rb") as handle:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise ModelError(f"{path}: the model file is not a regular file")
        if info.st_size > MAX_MODEL_BYTES:
            raise ModelError(
                f"{path}: model file of {info.st_size:,} bytes is over the limit "
                f"of {MAX_MODEL_BYTES:,} bytes"
            )
        digest = hashlib.sha256()
        try:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        except OSError as error:
            raise ModelError(
                f"{path}: cannot read model file ({error.strerror or error})"
            ) from None
    return digest.hexdigest()


def find_model(
    model_format: str, model_dir: Path | None = None, name: str | None = None
) -> ModelEntry:
    """The first manifest entry of ``model_format`` (or the one called ``name``), verified.

    Raises :class:`ModelError` when there is none, when a field the entry needs is missing or
    of the wrong type, or when the file is not a regular file whose sha256 is the manifest's:
    a changed or corrupted model is never loaded.
    """
    folder = model_dir or default_model_dir()
    manifest = folder / MANIFEST
    entries = read_manifest(folder)
    chosen = next(
        (
            (number, entry)
            for number, entry in enumerate(entries, start=1)
            if entry["format"] == model_format and name in (None, entry["name"])
        ),
        None,
    )
    if chosen is None:
        wanted = (
            f"model {name!r} of format {model_format!r}" if name else (f"no {model_format!r} model")
        )
        raise ModelError(f"{manifest}: {wanted} is not listed")
    number, entry = chosen
    sha256 = _field(manifest, number, entry, "sha256", str).lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ModelError(
            f"{manifest}: model {number}: field 'sha256' must be 64 hexadecimal "
            f"digits, not {sha256!r:.80}"
        )
    model = ModelEntry(
        name=entry["name"],
        format=entry["format"],
        path=folder / _field(manifest, number, entry, "file", str),
        sha256=sha256,
        input_size=_field(manifest, number, entry, "input_size", int),
        details=entry,
    )
    actual = file_sha256(model.path)
    if actual != model.sha256:
        raise ModelError(
            f"{model.path}: sha256 {actual[:12]}... does not match the manifest "
            f"({model.sha256[:12]}...); refusing a changed or corrupted model"
        )
    return model
