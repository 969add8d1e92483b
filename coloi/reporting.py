"""What ``coloi run`` does with each photo's outcome, whichever engine produced it: the output's
path on stdout, a failure as one line on stderr and one JSON line in the ``--report`` file, the
counts for the summary and the exit status, and the progress bar.

Nothing is kept per photo: an archive of millions is reported in flat memory.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, TypeVar

from coloi.discovery import is_photo_name
from coloi.errors import ColoiError, shown

if TYPE_CHECKING:
    from coloi.batch import Outcome

log = logging.getLogger("coloi")
T = TypeVar("T")


@dataclass
class Tally:
    """How many photos were colourised, failed and skipped so far."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = self.started or time.perf_counter()

    def count(self, outcome: Outcome) -> None:
        if outcome.error is not None:
            self.failed += 1
        elif outcome.skipped:
            self.skipped += 1
        else:
            self.done += 1

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def rate(self) -> float:
        """Photos finished (colourised or failed) per second since the start."""
        return (self.done + self.failed) / max(self.seconds, 1e-9)

    def summary(self) -> str:
        return (
            f"{self.done} colourised, {self.failed} failed, {self.skipped} skipped in "
            f"{self.seconds:.1f} s"
        )


def failure_record(outcome: Outcome) -> dict[str, Any]:
    """One line of the ``--report`` file: the photo, its output, the kind of error and the
    reason (the message printed on stderr is ``path: reason``)."""
    assert outcome.error is not None
    return {
        "path": str(outcome.error.path),
        "reason": outcome.error.reason,
        "error": type(outcome.error).__name__,
        "source": str(outcome.source),
        "output": None if outcome.target is None else str(outcome.target),
    }


class FailureReport:
    """A JSON Lines file with one line per failed photo (:func:`failure_record`), written as
    they happen and flushed line by line, so that a run that is killed still leaves the
    failures found so far. The file is replaced if it exists; a name that a photo could have
    is refused, so that a slip of the keyboard cannot overwrite a picture."""

    def __init__(self, path: Path) -> None:
        if is_photo_name(path.name):
            raise ColoiError(
                f"{path}: --report takes a JSON Lines file (report.jsonl), not a photo's name"
            )
        if path.is_dir():
            raise ColoiError(f"{path}: --report must name a file, not a folder")
        try:
            self.stream: IO[str] = path.open("w", encoding="utf-8")
        except OSError as error:
            raise ColoiError(
                f"{path}: cannot write the report ({error.strerror or error})"
            ) from None
        self.path = path

    def write(self, outcome: Outcome) -> None:
        try:
            self.stream.write(json.dumps(failure_record(outcome), ensure_ascii=False) + "\n")
            self.stream.flush()
        except OSError as error:
            raise ColoiError(
                f"{self.path}: cannot write the report ({error.strerror or error})"
            ) from None

    def close(self) -> None:
        self.stream.close()


class ProgressBar:
    """A bar on stderr (only when it is a terminal: stdout carries the output paths, and a bar
    drawn among them would spoil a pipe) with photos done, failed and photos per second. The
    total is unknown while the folders are still being listed."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("colourising"),
            BarColumn(),
            TextColumn("{task.completed}/{task.fields[total_text]}"),
            TextColumn(
                "{task.fields[done]} done, {task.fields[failed]} failed, "
                "{task.fields[rate]:.1f} photos/s"
            ),
            TimeElapsedColumn(),
            transient=True,
            console=Console(stderr=True),
        )
        self.task = self.progress.add_task(
            "colourising", total=None, total_text="?", done=0, failed=0, rate=0.0
        )
        self.progress.start()

    def update(self, tally: Tally) -> None:
        self.progress.update(
            self.task, advance=1, done=tally.done, failed=tally.failed, rate=tally.rate
        )

    def set_total(self, total: int) -> None:
        self.progress.update(self.task, total=total, total_text=str(total))

    def stop(self) -> None:
        self.progress.stop()


class Reporter:
    """The one place each outcome goes (``reporter(outcome)``), for either engine: the
    output's path to ``echo`` (stdout), a failure to stderr and the report file, a skip to
    stderr; counted in :attr:`tally`. Use as a context manager (it stops the bar and closes
    the report file)."""

    def __init__(
        self, echo: Callable[[str], None], report: Path | None = None, progress: bool | None = None
    ) -> None:
        self.echo = echo
        self.tally = Tally()
        self.report = FailureReport(report) if report is not None else None
        show = sys.stderr.isatty() if progress is None else progress
        self.bar = ProgressBar() if show else None

    def __call__(self, outcome: Outcome) -> None:
        self.tally.count(outcome)
        if outcome.error is not None:
            log.error("%s", outcome.error)
            if self.report is not None:
                self.report.write(outcome)
        elif outcome.skipped:
            log.info("%s: skipped, output exists", shown(outcome.source))
        else:
            self.echo(str(outcome.target))
        if self.bar is not None:
            self.bar.update(self.tally)

    def counted(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, telling the bar the total once they are all listed."""
        total = 0
        for item in items:
            total += 1
            yield item
        if self.bar is not None:
            self.bar.set_total(total)

    def __enter__(self) -> Reporter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.stop()
        if self.report is not None:
            self.report.close()
