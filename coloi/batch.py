"""Turning command-line inputs into jobs (source -> output path) and running them safely.

Outputs never replace an input, never replace an existing file unless asked, and are written
atomically, so a failed or interrupted photo leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from coloi.discovery import iter_photos
from coloi.errors import (
    ColoiError,
    MissingPhoto,
    OutputExists,
    PhotoError,
    UnreadablePhoto,
    UnwritableOutput,
)
from coloi.imageio import (
    FORMAT_SUFFIX,
    IMAGE_SUFFIXES,
    Limits,
    encode_photo,
    read_photo,
    remove_partial_writes_in,
    write_atomically,
)

if TYPE_CHECKING:
    from coloi.api import Colouriser

log = logging.getLogger("coloi")

COLOURISED_SUFFIX = "_colourised"
# The output format for each input suffix when none is chosen: the input's own, except for
# formats coloi reads but does not write (GIF), which become PNG.
SUFFIX_FORMAT = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".png": "png",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".webp": "webp",
    ".bmp": "bmp",
    ".gif": "png",
}


@dataclass(frozen=True)
class Job:
    """One photo to colourise and where its output goes."""

    source: Path
    target: Path
    format: str


def output_path(source: Path, relative: Path, output_dir: Path | None, fmt: str | None) -> Path:
    """Where a source's output goes: ``output_dir/relative`` or beside it, marked as coloured.

    It keeps the source's suffix unless ``fmt`` asks for another. A source in a format coloi
    does not write (GIF) keeps its suffix and gains the output's (``b.gif`` -> ``b.gif.png``),
    so that it never takes the output name of the PNG beside it (``b.png``).
    """
    name = source.stem
    if fmt is None and source.suffix.lower() not in IMAGE_SUFFIXES:
        fmt = SUFFIX_FORMAT.get(source.suffix.lower())
        name = source.name
    suffix = FORMAT_SUFFIX[fmt] if fmt else source.suffix
    if output_dir is None:
        return source.with_name(f"{name}{COLOURISED_SUFFIX}{suffix}")
    return (output_dir / relative).with_name(f"{name}{suffix}")


def plan_jobs(
    inputs: Iterable[Path], output_dir: Path | None, fmt: str | None
) -> Iterator[Job | PhotoError]:
    """Jobs for files and (recursively) folders; a PhotoError for each input that is unusable.

    A folder's photos are those :func:`coloi.discovery.find_photos` finds (hidden and temporary
    names and folders are passed over); a file named on the command line is always tried.

    Links are followed (a link given by name, and links to files inside a folder); a link in a
    folder that leads nowhere is reported rather than passed over in silence. A source whose
    output is that of a source before it is an error, not a job.
    """
    claimed: dict[Path, Path] = {}  # output -> the source that has it
    for item in _plan(inputs, output_dir, fmt):
        if isinstance(item, Job):
            first = claimed.setdefault(item.target, item.source)
            if first != item.source:
                # Two sources, one output (c.jpg and c.png with --format png): the second
                # would find the first's output there, and look done without being done.
                yield UnwritableOutput(
                    item.source,
                    f"its output {item.target} is also the output of {first}; rename one of them",
                )
                continue
        yield item


def _plan(
    inputs: Iterable[Path], output_dir: Path | None, fmt: str | None
) -> Iterator[Job | PhotoError]:
    for argument in inputs:
        if argument.is_dir():
            for path in iter_photos(argument):  # streamed: millions start at once
                if not path.is_file():
                    if path.is_symlink() and not path.exists():
                        yield MissingPhoto(
                            path,
                            "a link to nothing (its target is missing, "
                            "or links lead round in a loop)",
                        )
                    elif not path.is_dir():  # a FIFO or a socket with a photo's name
                        yield UnreadablePhoto(path, "not a regular file")
                    continue
                if output_dir is None and path.stem.endswith(COLOURISED_SUFFIX):
                    continue
                yield _job(path, path.relative_to(argument), output_dir, fmt)
        elif argument.exists() or argument.is_symlink():
            yield _job(argument, Path(argument.name), output_dir, fmt)
        else:
            yield MissingPhoto(argument, "no such file or folder")


def _job(
    source: Path, relative: Path, output_dir: Path | None, fmt: str | None
) -> Job | PhotoError:
    chosen = fmt or SUFFIX_FORMAT.get(source.suffix.lower())
    if chosen is None:
        return UnreadablePhoto(
            source, f"unknown image type {source.suffix!r} (use --format to name the output format)"
        )
    target = output_path(source, relative, output_dir, fmt)
    if _same_file(source, target) and target.resolve() == source.resolve():
        return UnwritableOutput(target, "output would replace its input")
    return Job(source, target, chosen)


def removing_partial_writes(items: Iterable[Job | PhotoError]) -> Iterator[Job | PhotoError]:
    """``items``, having first removed the temporary files that an earlier run, killed mid-write,
    left in each output folder (before the first of this run's photos for that folder is
    handed on, so that none of this run's own writes is touched)."""
    cleaned: set[Path] = set()
    for item in items:
        if isinstance(item, Job) and item.target.parent not in cleaned:
            cleaned.add(item.target.parent)
            if removed := remove_partial_writes_in(item.target.parent):
                log.info(
                    "%s: removed %d temporary file(s) left by an interrupted run",
                    item.target.parent,
                    removed,
                )
        yield item


def _same_file(source: Path, target: Path) -> bool:
    # Two stats first: resolving both paths (a syscall per folder on the way) for every photo
    # would be most of the listing's time on a rerun over millions of existing outputs.
    try:
        return source.samefile(target)
    except OSError:
        return False


def output_exists(target: Path) -> bool:
    """Whether an output is there; an output path the system cannot even look up (a name
    over its length limit, a loop of links) is an :class:`UnwritableOutput`."""
    try:
        os.stat(target)
    except (FileNotFoundError, NotADirectoryError):  # the folder, when made, will say
        return False
    except OSError as error:
        raise UnwritableOutput(target, f"cannot write ({error.strerror or error})") from None
    return True


def render(job: Job, colouriser: Colouriser, limits: Limits, quality: int = 95) -> bytes:
    """Read and colourise ``job.source`` and encode its output, in memory; touches no file.

    Raises only PhotoError: UnreadablePhoto for the input, PhotoError for a failed
    colourisation or an output format that cannot hold the photo.
    """
    try:
        photo = colouriser.colourise(read_photo(job.source, limits))
    except PhotoError:
        raise
    except ColoiError as error:  # a step's option error, met at run time
        raise PhotoError(job.source, str(error)) from None
    except MemoryError:
        raise PhotoError(job.source, "not enough memory to colourise it") from None
    except Exception as error:  # noqa: BLE001 - steps and backends are plugins (anyone's code)
        # and decoders meet every kind of damaged file: whatever they raise fails this one
        # photo, by name, and must not end a batch or the daemon (which systemd would only
        # restart into the same photo).
        reason = " ".join(str(error).split())  # OpenCV's messages span several lines
        raise PhotoError(
            job.source, f"colourisation failed ({type(error).__name__}: {reason})"
        ) from None
    try:
        return encode_photo(photo.pixels, job.format, photo.exif, photo.icc_profile, quality)
    except MemoryError:
        raise PhotoError(job.source, "not enough memory to encode it") from None
    except (ValueError, OSError) as error:
        raise PhotoError(
            job.source, f"cannot encode it as {job.format.upper()} ({error})"
        ) from None


def write_output(job: Job, data: bytes, overwrite: bool = False) -> None:
    """Write an encoded output atomically, making its folder; raises only PhotoError."""
    try:
        _make_folders(job.target.parent)
    except OSError as error:
        raise UnwritableOutput(
            job.target.parent, f"cannot create folder ({error.strerror or error})"
        ) from None
    write_atomically(job.target, data, overwrite=overwrite)


def _make_folders(folder: Path) -> None:
    """``folder`` and any missing folders above it. Not ``Path.mkdir(parents=True)`` or
    ``os.makedirs``: both recurse once a level, and fail on a tree a few thousand deep."""
    missing = []
    while not folder.is_dir() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    for each in reversed(missing):
        try:
            each.mkdir()
        except FileExistsError:
            if not each.is_dir():
                raise


def colourise_file(
    job: Job, colouriser: Colouriser, limits: Limits, overwrite: bool = False, quality: int = 95
) -> None:
    """Read, colourise and write one photo; raises only PhotoError, and leaves no partial
    output behind."""
    if not overwrite and output_exists(job.target):
        raise OutputExists(job.target, "output already exists (use --overwrite to replace it)")
    write_output(job, render(job, colouriser, limits, quality), overwrite)


@dataclass
class Outcome:
    """The result of one job, for progress reporting and the exit code."""

    source: Path
    target: Path | None
    error: PhotoError | None
    seconds: float
    skipped: bool = False


def existing_output(job: Job, overwrite: bool, skip_existing: bool) -> Outcome | None:
    """The outcome of a job whose output is already there (skipped with ``skip_existing``,
    else failed), or None when it is to be done: ``--skip-existing`` and ``--overwrite``."""
    if overwrite or not job.target.exists():
        return None
    if skip_existing:
        return Outcome(job.source, job.target, None, 0.0, skipped=True)
    return Outcome(
        job.source,
        job.target,
        OutputExists(job.target, "output already exists (use --overwrite to replace it)"),
        0.0,
    )


def run_one(
    item: Job | PhotoError,
    colouriser: Colouriser,
    limits: Limits,
    overwrite: bool,
    skip_existing: bool,
    quality: int,
) -> Outcome:
    """Do one job as ``coloi run`` does, whichever engine runs it; never raises PhotoError
    (a failure is the outcome's ``error``)."""
    started = time.perf_counter()
    if isinstance(item, PhotoError):
        return Outcome(item.path, None, item, 0.0)
    try:
        if skip_existing and not overwrite and output_exists(item.target):
            return Outcome(item.source, item.target, None, 0.0, skipped=True)
        colourise_file(item, colouriser, limits, overwrite, quality)
        return Outcome(item.source, item.target, None, time.perf_counter() - started)
    except PhotoError as error:
        return Outcome(item.source, item.target, error, time.perf_counter() - started)


def run_jobs(
    items: Iterable[Job | PhotoError],
    colouriser: Colouriser,
    limits: Limits,
    overwrite: bool = False,
    skip_existing: bool = False,
    quality: int = 95,
    report: Callable[[Outcome], None] = lambda outcome: None,
    workers: int = 2,
    stop: threading.Event | None = None,
) -> None:
    """Run every job on this machine, carrying on past failures; each outcome is given to
    ``report`` in input order, and none is kept (an archive of millions runs in flat memory).

    With several ``workers``, one photo's decoding and encoding overlap another's inference
    (OpenCV and Pillow release the GIL; the colouriser serialises the backend itself). Once
    ``stop`` is set (Ctrl-C, say), no photo is started any more: those already started are
    finished and reported.
    """
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # A bounded window of photos in flight keeps memory flat on long batches.
        pending: deque[Future[Outcome]] = deque()

        def finish_first() -> None:
            future = pending.popleft()
            if future.cancelled():
                return  # stopped before it started
            report(future.result())

        for item in items:
            if stop is not None and stop.is_set():
                break
            pending.append(
                pool.submit(run_one, item, colouriser, limits, overwrite, skip_existing, quality)
            )
            if len(pending) > workers:
                finish_first()
        while pending:
            if stop is not None and stop.is_set():
                for future in pending:
                    future.cancel()
            finish_first()
