"""``coloi run --engine ray``: the jobs of ``coloi run``, spread over a Ray cluster.

The driver (this process) lists the photos as a stream and hands them out, a few at a time, to
a pool of Ray actors: one per CPU slot (or per GPU for ``tf-gpu``), each holding one loaded
:class:`coloi.Colouriser`. A worker reads, colourises and writes its photos itself (through
:func:`coloi.batch.run_jobs`, exactly what ``--engine local`` does), so the driver never holds
pixels and only a bounded number of photos is in flight, however large the archive.

Exactly once: the driver looks at each output before sending its photo (``--skip-existing``,
``--overwrite``), and outputs are written atomically. When a worker dies mid-batch (killed,
out of memory, its node lost), Ray restarts the actor and the driver sends that batch's photos
again, one per task: an output found then was written by the attempt that died, and counts as
done; the dead attempt's temporary files are removed. A photo whose worker dies
:data:`ATTEMPTS` times (a file that crashes a decoder, say) fails by name instead.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import ray
import ray.exceptions

from coloi.api import Colouriser
from coloi.batch import Job, Outcome, existing_output, run_jobs
from coloi.errors import ColoiError, PhotoError
from coloi.imageio import Limits, remove_partial_writes
from coloi.settings import PluginSettings

log = logging.getLogger("coloi")

BATCH_SIZE = 8  # photos per task: amortises Ray's per-call cost, small enough to redo
TASKS_PER_WORKER = 2  # in flight per actor, so that none waits for the driver between batches
ATTEMPTS = 3  # a photo whose worker died this many times fails
# A local Ray started here carries only paths and outcomes: a small object store, so that a
# container's small /dev/shm is enough (Ray's default is 30% of the memory).
LOCAL_OBJECT_STORE_BYTES = 100 * 1024 * 1024

# Errors that mean the worker, not the photo, was lost: its photos are sent again.
WORKER_LOST = (
    ray.exceptions.RayActorError,
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.ObjectLostError,
    ray.exceptions.OutOfMemoryError,
)


@dataclass(frozen=True)
class WorkerSettings:
    """What each actor needs to build its Colouriser and run its jobs: ``coloi run``'s
    options. ``threads`` is the CPU threads per actor, and the CPUs it asks Ray for."""

    backend: str = "auto"
    pre: tuple[str, ...] = ()
    post: tuple[str, ...] = ()
    model_dir: str | None = None
    model: str | None = None
    threads: int = 1
    limits: Limits = field(default_factory=Limits)
    quality: int = 95
    overwrite: bool = False
    skip_existing: bool = False
    plugins: PluginSettings = field(default_factory=PluginSettings)


class PhotoWorker:
    """One Ray actor: a Colouriser loaded once, then batch after batch of jobs."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.colouriser: Colouriser | None = None
        self.error: str | None = None
        try:
            self.colouriser = Colouriser(
                settings.backend,
                pre=settings.pre,
                post=settings.post,
                model_dir=settings.model_dir,
                model=settings.model,
                threads=settings.threads,
                limits=settings.limits,
                quality=settings.quality,
                plugins=settings.plugins,
            )
        except ColoiError as error:
            # Kept, not raised: an actor whose constructor raises is restarted by Ray in a
            # loop, while the driver asks ready() and stops the run with this one line.
            self.error = str(error)

    def ready(self) -> str | None:
        """None once the backend is loaded, else why it could not be."""
        return self.error

    def colourise(self, jobs: list[Job], retry: bool) -> list[Outcome]:
        """Each job's outcome, in order, as ``--engine local`` does them (two photos in hand,
        so that one's reading, encoding and writing overlap the other's inference).

        ``retry`` says these photos' worker died before it could tell what it had done: an
        output there now is that attempt's (the driver saw none before sending it), and its
        temporary files are left-overs."""
        settings = self.settings
        assert self.colouriser is not None  # the driver sends nothing before ready()
        known: dict[int, Outcome] = {}
        if retry:
            for index, job in enumerate(jobs):
                remove_partial_writes(job.target)
                if not settings.overwrite and job.target.exists():
                    known[index] = Outcome(job.source, job.target, None, 0.0)
        todo = [index for index in range(len(jobs)) if index not in known]
        outcomes: list[Outcome] = []
        run_jobs(
            [jobs[index] for index in todo],
            self.colouriser,
            settings.limits,
            settings.overwrite,
            settings.skip_existing,
            settings.quality,
            outcomes.append,
        )
        known.update(zip(todo, outcomes, strict=True))
        return [known[index] for index in range(len(jobs))]


@dataclass
class _Batch:
    jobs: list[Job]  # as the driver names them (relative paths stay relative)
    attempt: int = 1


def _absolute(job: Job) -> Job:
    # Workers run in folders of their own on other machines: they are given absolute paths
    # (without resolving links, as the local engine reads them).
    return replace(job, source=job.source.absolute(), target=job.target.absolute())


def _as_given(outcome: Outcome, job: Job) -> Outcome:
    """A worker's outcome, naming the paths as the user gave them, so that its message is the
    very line ``--engine local`` prints."""
    error = outcome.error
    if error is not None:
        sent = _absolute(job)
        names = {
            sent.source: job.source,
            sent.target: job.target,
            sent.target.parent: job.target.parent,
        }
        if error.path in names:
            error = type(error)(names[error.path], error.reason)
    return replace(outcome, source=job.source, target=job.target, error=error)


class _Dispatcher:
    """Keeps every worker busy with a bounded number of batches, collects their outcomes and
    sends the photos of a lost worker again."""

    def __init__(
        self, workers: list[Any], settings: WorkerSettings, report: Callable[[Outcome], None]
    ) -> None:
        self.workers = workers
        self.settings = settings
        self.report = report
        self.load = [0] * len(workers)
        self.in_flight: dict[ray.ObjectRef, tuple[int, _Batch]] = {}
        self.retries: deque[_Batch] = deque()

    def run(self, items: Iterable[Job | PhotoError]) -> None:
        batch: list[Job] = []
        for item in items:
            if isinstance(item, PhotoError):
                self.report(Outcome(item.path, None, item, 0.0))
                continue
            known = existing_output(item, self.settings.overwrite, self.settings.skip_existing)
            if known is not None:
                self.report(known)
                continue
            batch.append(item)
            if len(batch) == BATCH_SIZE:
                self._send(_Batch(batch))
                batch = []
        if batch:
            self._send(_Batch(batch))
        while self.in_flight or self.retries:
            if self.retries:
                self._send(self.retries.popleft())
            else:
                self._collect()

    def _send(self, batch: _Batch) -> None:
        while self.retries and batch.attempt == 1:  # photos to redo go first
            self._send(self.retries.popleft())
        while len(self.in_flight) >= TASKS_PER_WORKER * len(self.workers):
            self._collect()
        index = min(range(len(self.workers)), key=self.load.__getitem__)
        jobs = [_absolute(job) for job in batch.jobs]
        ref: ray.ObjectRef = self.workers[index].colourise.remote(jobs, batch.attempt > 1)
        self.in_flight[ref] = (index, batch)
        self.load[index] += 1

    def _collect(self) -> None:
        """Wait for at least one batch, and report every one that has finished."""
        ready, _ = ray.wait(list(self.in_flight), num_returns=1)
        ready, _ = ray.wait(list(self.in_flight), num_returns=len(self.in_flight), timeout=0)
        for ref in ready:
            index, batch = self.in_flight.pop(ref)
            self.load[index] -= 1
            try:
                outcomes: list[Outcome] = ray.get(ref)
            except WORKER_LOST as error:
                self._lost(batch, error)
                continue
            except ray.exceptions.RayTaskError as error:  # a bug, not a photo: say so per photo
                cause = error.cause if error.cause is not None else error
                outcomes = [
                    Outcome(
                        job.source,
                        job.target,
                        PhotoError(
                            job.source, f"failed on a Ray worker ({type(cause).__name__}: {cause})"
                        ),
                        0.0,
                    )
                    for job in batch.jobs
                ]
                self._report_all(outcomes, batch)
                continue
            self._report_all(outcomes, batch)

    def _report_all(self, outcomes: list[Outcome], batch: _Batch) -> None:
        for job, outcome in zip(batch.jobs, outcomes, strict=True):
            self.report(_as_given(outcome, job))

    def _lost(self, batch: _Batch, error: Exception) -> None:
        kind = type(error).__name__
        if batch.attempt >= ATTEMPTS:
            for job in batch.jobs:
                reason = f"its Ray worker died {ATTEMPTS} times while colourising it ({kind})"
                self.report(Outcome(job.source, job.target, PhotoError(job.source, reason), 0.0))
            return
        log.warning(
            "a Ray worker was lost with %d photo(s) in hand (%s); they are sent again",
            len(batch.jobs),
            kind,
        )
        for job in batch.jobs:  # one photo per task from now on, so that a photo that kills
            self.retries.append(_Batch([job], batch.attempt + 1))  # its worker is found


def _check_reachable(address: str) -> None:
    """Fail at once when a ``host:port`` address does not answer: Ray itself would retry for
    minutes, printing warnings."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # ray://, auto, or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as error:
        raise ColoiError(
            f"cannot reach the Ray cluster at {address} "
            f"({error.strerror or error}); is it running (ray start --head)?"
        ) from None


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address``, or start a Ray on this machine when it is None."""
    if address is not None:
        _check_reachable(address)
    # Ray's own log lines (start-up notes, each worker's output) would bury the one line per
    # photo that coloi prints; the workers' failures reach the driver as outcomes.
    try:
        if address is None:
            ray.init(
                address="local",
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            )
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, ValueError, RuntimeError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise ColoiError(f"cannot start or reach {where} ({error})") from None


def start_workers(settings: WorkerSettings) -> list[Any]:
    """One actor per CPU slot of the cluster (``settings.threads`` CPUs each), or for
    ``tf-gpu`` on a cluster with GPUs one per GPU; returns once each has loaded its model."""
    resources = ray.cluster_resources()
    cpus = resources.get("CPU", 1.0)
    gpus = resources.get("GPU", 0.0)
    per_gpu = 1 if settings.backend.split(":")[0] == "tf-gpu" and gpus >= 1 else 0
    count = max(1, int(cpus // settings.threads))
    if per_gpu:
        count = max(1, min(count, int(gpus)))
    actor: Any = ray.remote(PhotoWorker).options(  # type: ignore[attr-defined]
        num_cpus=settings.threads,
        num_gpus=per_gpu,
        # Ray restarts a dead actor (on any node); the driver, not Ray, sends its tasks again,
        # because only the driver knows that their photos' outputs were absent at first.
        max_restarts=-1,
        max_task_retries=0,
    )
    workers = [actor.remote(settings) for _ in range(count)]
    try:
        errors = ray.get([worker.ready.remote() for worker in workers])
    except WORKER_LOST as error:
        raise ColoiError(
            f"a Ray worker died while loading the backend ({type(error).__name__})"
        ) from None
    for error_text in errors:
        if error_text is not None:
            raise ColoiError(error_text)
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    log.info(
        "Ray: %d workers (%s CPU%s%s each) on %d node%s",
        count,
        settings.threads,
        "" if settings.threads == 1 else "s",
        " and a GPU" if per_gpu else "",
        nodes,
        "" if nodes == 1 else "s",
    )
    return workers


def run_on_ray(
    items: Iterable[Job | PhotoError],
    settings: WorkerSettings,
    report: Callable[[Outcome], None],
    address: str | None = None,
) -> None:
    """Run the jobs on Ray (the cluster at ``address``, else a Ray started here), giving each
    outcome to ``report`` as it arrives (in no particular order). ``items`` is read as the
    work goes on, never all at once."""
    # Ray prints its raylet's messages (a worker died, a request cannot be scheduled) on
    # stdout, from a thread of its own; stdout carries only the outputs' paths, so that a
    # script can read them: those messages go to stderr (``report`` holds its own stream).
    with contextlib.redirect_stdout(sys.stderr):
        connect(address)
        try:
            workers = start_workers(settings)
            _Dispatcher(workers, settings, report).run(items)
        finally:
            ray.shutdown()
