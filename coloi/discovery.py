"""Which files are photos: the one rule that ``run``, ``watch``, ``eval`` and ``train`` share.

A name is *hidden or temporary* when it starts with ``.`` (hidden files and folders, rsync's
``.name.XXXXXX``, coloi's own ``.name.coloi-partial``) or ends in one of
:data:`TEMPORARY_SUFFIXES` (downloads and copies in progress, editors' backups). A photo is a
file whose suffix coloi reads (JPEG, PNG, TIFF, WebP, BMP, GIF) and whose name, and every
folder's name on the way to it, is neither hidden nor temporary. Linked folders are not
entered (a link could lead round in a loop, or out of a watched folder); links to files are
listed like files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePath

from coloi.errors import ColoiError
from coloi.imageio import READABLE_SUFFIXES

TEMPORARY_SUFFIXES = (
    ".part",
    ".partial",
    ".tmp",
    ".temp",
    ".crdownload",
    ".download",
    "~",
    ".coloi-partial",
)


def is_hidden_or_temporary(name: str) -> bool:
    """Whether a file or folder name is hidden or temporary (see the module's rule)."""
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


def is_photo_name(name: str) -> bool:
    """Whether a file name is a photo's: a readable suffix, and not hidden or temporary."""
    return PurePath(name).suffix.lower() in READABLE_SUFFIXES and not is_hidden_or_temporary(name)


def is_photo_path(path: PurePath, root: PurePath) -> bool:
    """Whether ``path``, under ``root``, is a photo by its name and its folders' names."""
    relative = path.relative_to(root)
    return is_photo_name(relative.name) and not any(
        is_hidden_or_temporary(part) for part in relative.parent.parts
    )


def iter_photos(folder: Path) -> Iterator[Path]:
    """Every photo under ``folder`` by the rule above, recursively, in sorted order, as it is
    found: an archive of millions of photos starts being worked on at once, and only the
    folders on the way to the current one are held in memory (each one's names, to sort them).

    Only names are looked at: a path listed may be a broken link, or a FIFO named like a
    photo, which whoever reads it then reports. A folder that cannot be listed is passed over,
    as ``os.walk`` does. The walk keeps its own stack of folders, so a tree of any depth is
    walked (recursion fails a few thousand folders down).
    """
    # Depth first over each folder's names sorted together (files and subfolders alike) gives
    # exactly sorted(paths): Paths compare part by part.
    folders = [Path(folder)]
    listings = [iter(_listed(folder))]
    while listings:
        for name, is_folder in listings[-1]:
            path = Path(folders[-1], name)
            if is_folder:
                folders.append(path)
                listings.append(iter(_listed(path)))
                break
            yield path
        else:
            folders.pop()
            listings.pop()


def _listed(folder: Path) -> list[tuple[str, bool]]:
    """The photos' and the subfolders' names in ``folder``, sorted, each with whether it is a
    folder to enter. Only these are kept (as plain names: a folder of a million photos costs
    about 160 MB while it is worked on)."""
    found = []
    try:
        with os.scandir(folder) as listing:
            for entry in listing:
                if is_hidden_or_temporary(entry.name):
                    continue
                if _is_dir(entry):
                    if not entry.is_symlink():  # a linked folder could lead round in a loop
                        found.append((entry.name, True))
                elif is_photo_name(entry.name):
                    found.append((entry.name, False))
    except OSError:
        return []
    found.sort()  # names in one folder differ, so the flags are never compared
    return found


def find_photos(folder: Path) -> list[Path]:
    """Every photo under ``folder`` by the rule above, recursively, sorted (a list of
    :func:`iter_photos`)."""
    return list(iter_photos(folder))


def walk_photos(folder: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every photo under ``folder`` with its ``lstat``, in no particular order, by the rule
    of :func:`iter_photos` (for the daemon's walks, which need no order but each file's
    size and times)."""
    stack = [os.fspath(folder)]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                listed = list(entries)
        except OSError:
            continue
        for entry in listed:
            if is_hidden_or_temporary(entry.name):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_symlink() and _is_dir(entry):
                    continue  # a linked folder is never entered, nor is it a photo
                elif is_photo_name(entry.name):
                    yield Path(entry.path), entry.stat(follow_symlinks=False)
            except OSError:  # removed meanwhile
                continue


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def refuse_overlap(folder: Path, output_dir: Path) -> None:
    """Raise ColoiError when a photo folder and an output folder overlap: the same folder, or
    one inside the other. Outputs mirror the input tree, so an output folder above the input
    would write ``in/x.png``'s output over ``in/in/x.png``; one inside it would be read back as
    input."""
    source, target = folder.resolve(), output_dir.resolve()
    if source == target or source in target.parents or target in source.parents:
        raise ColoiError(
            f"{output_dir}: the output folder overlaps the photo folder {folder}; "
            f"choose an output folder outside it (and not above it)"
        )
