"""The model manifest: which model files exist, what they are, and proof they are intact.

A model folder holds ``manifest.json`` and the files it lists. The default folder is the one
shipped with coloi (the ``models/`` folder of the source tree); ``--model-dir`` (or
``COLOI_MODEL_DIR``, resolved by :mod:`coloi.settings`) points at another folder with the same
layout.
"""

from __future__ import annotations

import hashlib
import json
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
    """The manifest's model entries, unverified."""
    manifest = model_dir / MANIFEST
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["models"]
    except FileNotFoundError:
        raise ModelError(f"{manifest}: no model manifest in this folder") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelError(f"{manifest}: unreadable model manifest ({error})") from None
    if not isinstance(entries, list):
        raise ModelError(f"{manifest}: 'models' must be a list")
    return entries


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_model(model_format: str, model_dir: Path | None = None,
               name: str | None = None) -> ModelEntry:
    """The first manifest entry of ``model_format`` (or the one called ``name``), verified.

    Raises :class:`ModelError` when there is none, or when the file's sha256 differs from the
    manifest's: a changed or corrupted model is never loaded.
    """
    folder = model_dir or default_model_dir()
    entries = read_manifest(folder)
    for entry in entries:
        if entry.get("format") == model_format and name in (None, entry.get("name")):
            break
    else:
        wanted = f"model {name!r} of format {model_format!r}" if name else (
            f"no {model_format!r} model")
        raise ModelError(f"{folder / MANIFEST}: {wanted} is not listed")
    try:
        model = ModelEntry(name=entry["name"], format=entry["format"],
                           path=folder / entry["file"], sha256=entry["sha256"],
                           input_size=int(entry["input_size"]), details=entry)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(f"{folder / MANIFEST}: entry {entry.get('name')!r} lacks {error}") \
            from None
    try:
        actual = file_sha256(model.path)
    except OSError as error:
        raise ModelError(f"{model.path}: cannot read model file ({error.strerror})") from None
    if actual != model.sha256:
        raise ModelError(f"{model.path}: sha256 {actual[:12]}... does not match the manifest "
                         f"({model.sha256[:12]}...); refusing a changed or corrupted model")
    return model
