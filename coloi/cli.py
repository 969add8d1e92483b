"""The ``coloi`` command line. Each command's docstring is its help text.

Heavy frameworks are imported only inside commands that load a backend or train, so
``coloi --help``, ``coloi --version`` and ``coloi plugins`` stay instant.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, NoReturn

import typer
import typer.core

from coloi import __version__
from coloi.errors import ColoiError, TrainingError

if TYPE_CHECKING:
    from coloi.api import Colouriser
    from coloi.plugin_host import Registry


class ColoiGroup(typer.core.TyperGroup):
    """The one error boundary: a :class:`ColoiError` from any command (or anything it calls)
    becomes one line on stderr and exit status 1, never a traceback. Also gives every option
    its ``COLOI_*`` environment variable (:mod:`coloi.settings`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from coloi.settings import assign_envvars

        assign_envvars(self.commands)

    def invoke(self, ctx: Any) -> Any:  # a click Context (typer vendors click)
        from coloi.settings import environment, under_journald

        _log_to_stderr(under_journald(environment()))
        try:
            return super().invoke(ctx)
        except ColoiError as error:
            log.error("error: %s", error)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:  # Ctrl-C before a command could say more (click: exit 1)
            log.error("interrupted")
            raise typer.Exit(130) from None


class _LineFormatter(logging.Formatter):
    """``coloi: message``; under systemd, with the syslog priority journald reads from a line's
    start (``<3>`` error, ``<4>`` warning, ``<6>`` info), so ``journalctl -p err`` finds
    failures."""

    PRIORITY: ClassVar[dict[int, int]] = {
        logging.ERROR: 3,
        logging.WARNING: 4,
        logging.INFO: 6,
        logging.DEBUG: 7,
    }

    def __init__(self, journald: bool) -> None:
        super().__init__("coloi: %(message)s")
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if not self.journald:
            return line
        return f"<{self.PRIORITY.get(record.levelno, 3)}>{line}"


def _log_to_stderr(journald: bool) -> None:
    """Every message for the user (errors, per-photo failures, progress notes) goes through the
    ``coloi`` logger to stderr, for run and watch alike; stdout carries only results."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter(journald))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    cls=ColoiGroup,
    help="Colourise black-and-white photographs automatically.",
)
log = logging.getLogger("coloi")

# Options shared by several commands, declared once.
BackendOption = Annotated[
    str,
    typer.Option(
        "--backend",
        "-b",
        help="Backend NAME[:key=value,...]: tflite, tf-gpu, auto (tf-gpu when "
        "TensorFlow and a GPU are present, else tflite), or one a plugin "
        "adds; options as coloi plugins --options lists.",
    ),
]
ModelDirOption = Annotated[
    Path | None,
    typer.Option(
        "--model-dir",
        help="Folder with manifest.json and model files (default: $COLOI_MODEL_DIR, "
        "else the models shipped with coloi).",
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", help="Model name from the manifest (default: the first of the backend's format)."
    ),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="CPU threads for inference (default: all cores)."),
]
PreOption = Annotated[
    list[str] | None,
    typer.Option("--pre", help="Preprocess step NAME[:key=value,...]; repeat to chain, in order."),
]
PostOption = Annotated[
    list[str] | None,
    typer.Option(
        "--post", help="Postprocess step NAME[:key=value,...]; repeat to chain, in order."
    ),
]
FormatOption = Annotated[
    str | None,
    typer.Option(
        "--format", "-f", help="Output format: jpeg, png, tiff, webp or bmp (default: the input's)."
    ),
]
QualityOption = Annotated[int, typer.Option(min=1, max=100, help="JPEG/WebP output quality.")]
MaxPixelsOption = Annotated[
    int,
    typer.Option(
        "--max-pixels", min=1, help="Refuse photos with more pixels than this (protects memory)."
    ),
]
MaxBytesOption = Annotated[
    int,
    typer.Option(
        "--max-bytes", min=1, help="Refuse files larger than this many bytes (protects memory)."
    ),
]


def fail(message: str) -> NoReturn:
    """Stop the command with a one-line error (printed by :class:`ColoiGroup`), status 1."""
    raise ColoiError(message)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"coloi {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    block_plugin: Annotated[
        list[str] | None,
        typer.Option(
            "--block-plugin",
            help="Do not load the plugin with this entry-point name (repeatable; "
            "also $COLOI_BLOCK_PLUGINS=a,b).",
            envvar=None,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only print errors.")] = False,
) -> None:
    """Colourise black-and-white photographs automatically."""
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    # Every setting is resolved here, once: the config file's tables become the commands'
    # defaults, under the environment and the command line (see coloi/settings.py).
    from coloi.settings import PluginSettings, config_defaults, environment

    environ = environment()
    commands = ctx.command.commands  # type: ignore[attr-defined]
    ctx.default_map = config_defaults(commands, ctx, environ)
    ctx.obj = PluginSettings.resolve(environ, block_plugin or ())


def _registry(ctx: typer.Context) -> Registry:
    from coloi.plugin_host import get_registry

    return get_registry(ctx.obj)


def _colouriser(
    ctx: typer.Context,
    backend: str,
    model_dir: Path | None,
    model: str | None,
    threads: int | None,
    pre: list[str] | None,
    post: list[str] | None,
) -> Colouriser:
    """Load the plugins, check the steps, then load the backend's model (once per run),
    through the public API (:class:`coloi.Colouriser`)."""
    from coloi.api import Colouriser

    return Colouriser(
        backend,
        pre=pre or (),
        post=post or (),
        model_dir=model_dir,
        model=model,
        threads=threads,
        plugins=ctx.obj,
    )


@app.command()
def run(
    ctx: typer.Context,
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Photos and folders (searched recursively for image files)."),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for the outputs, mirroring each folder argument's tree. "
            "Default: beside each input, as NAME_colourised.EXT.",
        ),
    ] = None,
    backend: BackendOption = "auto",
    fmt: FormatOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    skip_existing: Annotated[
        bool, typer.Option(help="Skip photos whose output already exists instead of failing them.")
    ] = False,
    quality: QualityOption = 95,
    threads: ThreadsOption = None,
    model_dir: ModelDirOption = None,
    model: ModelOption = None,
    pre: PreOption = None,
    post: PostOption = None,
    max_pixels: MaxPixelsOption = 60_000_000,
    max_bytes: MaxBytesOption = 1 << 30,
    engine: Annotated[
        str,
        typer.Option(
            help="Where the photos are colourised: local (this machine) or ray (a Ray cluster, "
            "see docs/scale-out.md; needs the ray extra)."
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="With --engine ray, the cluster to join (host:port or "
            "ray://host:port; default: $RAY_ADDRESS, else a Ray started "
            "on this machine).",
        ),
    ] = None,
    report_file: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Also write each failed photo as one JSON line (path, reason, "
            "error, source, output) to this file, replacing it.",
        ),
    ] = None,
) -> None:
    """Colourise photos and folders of photos.

    Inputs are never changed and existing files are never replaced unless --overwrite is
    given; outputs are written atomically. A photo that fails is reported on one line and the
    others are still done; the exit status is 1 if any failed. Folders are listed as the work
    goes on, so the first outputs of a huge archive appear at once.
    """
    from coloi.batch import plan_jobs, removing_partial_writes
    from coloi.imageio import FORMAT_SUFFIX, Limits
    from coloi.reporting import Reporter

    if fmt is not None and fmt not in FORMAT_SUFFIX:
        fail(f"unknown format {fmt!r} (choose from {', '.join(FORMAT_SUFFIX)})")
    if engine not in ENGINES:
        fail(f"--engine {engine}: choose one of {', '.join(ENGINES)}")
    if output is not None:
        from coloi.discovery import refuse_overlap

        for folder in (path for path in inputs if path.is_dir()):
            refuse_overlap(folder, output)
    limits = Limits(max_pixels, max_bytes)
    work: Callable[[Iterable[Any], Callable[[Any], None]], None]
    if engine == "local":
        from coloi.batch import run_jobs

        colouriser = _colouriser(ctx, backend, model_dir, model, threads, pre, post)

        def work(items: Iterable[Any], report: Callable[[Any], None]) -> None:
            run_jobs(
                items, colouriser, limits, overwrite, skip_existing, quality, report, stop=stop
            )
    else:
        work = _ray_engine(
            ctx,
            ray_address,
            backend=backend,
            pre=pre,
            post=post,
            model_dir=model_dir,
            model=model,
            threads=threads,
            limits=limits,
            quality=quality,
            overwrite=overwrite,
            skip_existing=skip_existing,
        )
    # Bound to stdout now: the Ray engine sends whatever else is printed there to stderr.
    echo = functools.partial(typer.echo, file=sys.stdout)
    # Ctrl-C: the local engine finishes the photos it started and says what it wrote; on Ray
    # a Ctrl-C interrupts at once (the actors' photos are written atomically or not at all).
    catching = _stop_on_ctrl_c() if engine == "local" else contextlib.nullcontext(threading.Event())
    with (
        catching as stop,
        Reporter(
            echo,
            report_file,
            progress=sys.stderr.isatty()
            and (len(inputs) > 1 or any(path.is_dir() for path in inputs)),
        ) as reporter,
    ):
        work(reporter.counted(removing_partial_writes(plan_jobs(inputs, output, fmt))), reporter)
    tally = reporter.tally
    if stop.is_set():
        # What was written is listed on stdout already.
        log.error("interrupted: %s; the rest not done", tally.summary())
        raise typer.Exit(130)
    log.info("%s", tally.summary())
    if tally.failed:
        raise typer.Exit(1)


@contextlib.contextmanager
def _stop_on_ctrl_c() -> Iterator[threading.Event]:
    """An event set by Ctrl-C (SIGINT), so that a batch can finish the photos it started and
    say what it wrote; a second Ctrl-C interrupts at once. Only the main thread can catch
    signals; elsewhere the event is never set."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def interrupt(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


ENGINES = ("local", "ray")


def _ray_engine(
    ctx: typer.Context,
    address: str | None,
    *,
    backend: str,
    pre: list[str] | None,
    post: list[str] | None,
    model_dir: Path | None,
    model: str | None,
    threads: int | None,
    **options: Any,
) -> Callable[[Iterable[Any], Callable[[Any], None]], None]:
    """``coloi run --engine ray``: the same jobs, on the actors of a Ray cluster
    (:mod:`coloi.ray_engine`), each with one backend on ``--threads`` CPUs (default 1).
    Fails at once when Ray is not installed."""
    try:
        from coloi.ray_engine import WorkerSettings, run_on_ray
    except ImportError as error:
        if error.name is None or error.name.split(".")[0] != "ray":
            raise
        fail("--engine ray needs Ray: pip install 'coloi[ray]'")
    from coloi.settings import environment

    settings = WorkerSettings(
        backend=backend,
        pre=tuple(pre or ()),
        post=tuple(post or ()),
        model_dir=None if model_dir is None else str(model_dir.absolute()),
        model=model,
        threads=threads or 1,
        plugins=ctx.obj,
        **options,
    )
    # Ray's own variable names the cluster unless --ray-address (or COLOI_RAY_ADDRESS) does.
    cluster = address or environment().get("RAY_ADDRESS") or None

    def work(items: Iterable[Any], report: Callable[[Any], None]) -> None:
        run_on_ray(items, settings, report, cluster)

    return work


@app.command()
def plugins(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    options: Annotated[
        bool,
        typer.Option(
            "--options",
            help="Also list each backend's and step's options: type, default, range "
            "or choices, and help.",
        ),
    ] = False,
) -> None:
    """List the installed backends and steps, and the plugin that provides each.

    Backends and steps take their options as NAME:key=value,key=value (--backend, --pre,
    --post, or the config file).
    """
    rows = _registry(ctx).describe(options)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        note = "" if row["available"] == "yes" else f"  [unavailable: {row['available']}]"
        typer.echo(
            f"{row['kind']:<12} {row['name']:<16} {row['plugin']:<20} {row['description']}{note}"
        )
        for option in row.get("options", []):
            typer.echo(f"{'':<14}{_describe_option(option)}")


def _describe_option(option: dict[str, Any]) -> str:
    """``key=default  (type, range or choices)  help``, one line per option."""
    if option["choices"] is not None:
        allowed = f"one of {', '.join(map(str, option['choices']))}"
    elif option["minimum"] is not None or option["maximum"] is not None:
        low = "" if option["minimum"] is None else option["minimum"]
        high = "" if option["maximum"] is None else option["maximum"]
        allowed = f"{option['type']} in [{low}, {high}]"
    else:
        allowed = option["type"]
    return f"{option['name']}={option['default']}  ({allowed})  {option['help']}"


@app.command()
def watch(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="Folder to watch, subfolders included.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for the outputs, outside the watched one "
            "(default: FOLDER-colourised beside it).",
        ),
    ] = None,
    backend: BackendOption = "auto",
    polling: Annotated[
        bool,
        typer.Option(
            help="Poll instead of using inotify (network filesystems; automatic where inotify "
            "is unavailable)."
        ),
    ] = False,
    settle: Annotated[
        float, typer.Option(min=0.0, help="Seconds a file must stay unchanged before it is read.")
    ] = 1.0,
    poll_interval: Annotated[float, typer.Option(min=0.1, help="Seconds between polls.")] = 1.0,
    rescan: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Seconds between walks of the whole folder for photos that file events "
            "missed (if any are found, the daemon turns to polling).",
        ),
    ] = 60.0,
    quality: QualityOption = 95,
    threads: ThreadsOption = None,
    model_dir: ModelDirOption = None,
    model: ModelOption = None,
    pre: PreOption = None,
    post: PostOption = None,
    max_pixels: MaxPixelsOption = 60_000_000,
    max_bytes: MaxBytesOption = 1 << 30,
    photo_timeout: Annotated[
        float | None,
        typer.Option(
            "--photo-timeout",
            min=0.01,
            help="Give up a photo that takes longer than this many "
            "seconds; it is logged as failed and tried again "
            "after a restart.",
        ),
    ] = None,
) -> None:
    """Colourise every photo already in FOLDER or dropped into it later, exactly once.

    Runs until SIGTERM or Ctrl-C (exit status 0). Files are read only once complete; a photo
    that changes is done again; a bad file is logged and skipped until it changes. Progress
    survives restarts through a journal in the output folder.
    """
    from coloi.imageio import Limits
    from coloi.watch import Watcher

    folder = folder.expanduser()
    if not folder.is_dir():
        fail(f"{folder}: not a folder")
    target = output or folder.resolve().with_name(folder.resolve().name + "-colourised")
    colouriser = _colouriser(ctx, backend, model_dir, model, threads, pre, post)
    watcher = Watcher(
        folder,
        target,
        colouriser,
        Limits(max_pixels, max_bytes),
        polling=polling,
        settle=settle,
        poll_interval=poll_interval,
        quality=quality,
        photo_timeout=photo_timeout,
        rescan=rescan,
    )
    watcher.run()


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on. Anything but a loopback address (127.0.0.1, ::1, "
            "localhost) needs --token."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8008,
    token: Annotated[
        str | None,
        typer.Option(
            help="Bearer token the API requires (Authorization: Bearer TOKEN) and the page asks "
            "for once; at least 16 characters. Prefer $COLOI_TOKEN to the command line, "
            "which other users can see.",
            show_default=False,
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            help="Let pages from this origin (https://photos.example) call the "
            "API; repeatable. Without it, no CORS headers are sent.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Photos colourised at once (default: the CPU cores coloi may use)."
        ),
    ] = None,
    queue: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Requests that may wait for a worker; more are answered 503 with "
            "Retry-After (default: 4 per worker).",
        ),
    ] = None,
    backend: BackendOption = "auto",
    quality: QualityOption = 95,
    threads: ThreadsOption = None,
    model_dir: ModelDirOption = None,
    model: ModelOption = None,
    pre: PreOption = None,
    post: PostOption = None,
    max_pixels: MaxPixelsOption = 50_000_000,
    max_bytes: MaxBytesOption = 100 << 20,
    access_log: Annotated[bool, typer.Option(help="Log one line per request.")] = True,
) -> None:
    r"""Colourise photos over HTTP: an API under /v1 and a page at / for the browser.

    The backend loads once; photos are colourised by a bounded pool of workers. POST a photo
    to /v1/colourise (the raw body or the multipart field 'file') to get it back colourised;
    the API is described at /openapi.json. Runs until SIGTERM or Ctrl-C (exit status 0).

    Needs the serve extra: pip install 'coloi\[serve]'.
    """
    import os

    try:
        import python_multipart  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        fail(f"coloi serve needs {error.name or 'its extra'}: pip install 'coloi[serve]'")
    from coloi.imageio import Limits
    from coloi.serve.app import ServeSettings, create_app
    from coloi.serve.server import check_access, listen, run_server

    check_access(host, token)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = workers or cores or 1
    settings = ServeSettings(
        token=token,
        cors_origins=tuple(cors_origin or ()),
        workers=workers,
        queue=4 * workers if queue is None else queue,
        limits=Limits(max_pixels, max_bytes),
        quality=quality,
    )
    sock = listen(host, port)
    try:
        colouriser = _colouriser(ctx, backend, model_dir, model, threads, pre, post)
        plugins = _registry(ctx).describe(options=True)
    except BaseException:
        sock.close()
        raise
    run_server(create_app(colouriser, plugins, settings), sock, access_log)


def _need_keras(command: str) -> None:
    import importlib.util
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if importlib.util.find_spec("keras") is None or (
        os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"
        and importlib.util.find_spec("tensorflow") is None
    ):
        fail(f"coloi {command} needs TensorFlow and Keras: pip install 'coloi[tf]'")


def _photo_source(path: Path) -> None:
    """Refuse, before TensorFlow starts, a folder of photos that is missing or holds none (or
    a portable pack that is not there): training code would fail on it much later."""
    from coloi.discovery import find_photos

    if path.name.endswith(".pack.npz"):
        if not path.is_file():
            raise TrainingError(f"{path}: no such photo pack")
    elif not path.is_dir():
        raise TrainingError(f"{path}: not a folder of photos")
    elif not find_photos(path):
        raise TrainingError(f"{path}: no photos in this folder (JPEG, PNG, TIFF, WebP or BMP)")


@app.command()
def train(
    photos: Annotated[
        Path,
        typer.Argument(
            help="Folder of colour photos to learn from, or a portable .pack.npz of them."
        ),
    ],
    run_dir: Annotated[
        Path, typer.Argument(help="Folder for checkpoints, the training log and run.json.")
    ],
    val: Annotated[
        Path | None, typer.Option(help="Folder of colour photos measured after every epoch.")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 36,
    size: Annotated[int, typer.Option(min=32, help="Training crop size (multiple of 32).")] = 128,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    learning_rate: Annotated[float, typer.Option()] = 1e-3,
    width: Annotated[int, typer.Option(min=8, help="Decoder width.")] = 96,
    encoder: Annotated[
        str, typer.Option(help="ImageNet encoder: efficientnet-lite0 or mobilenet (alpha 0.25).")
    ] = "mobilenet",
    pretrained: Annotated[
        Path | None,
        typer.Option(
            help="The encoder's ImageNet weights: EfficientNet-Lite0 .pth (or .npz), or Keras "
            "MobileNet (alpha 0.25, no top) .h5."
        ),
    ] = None,
    min_crop: Annotated[
        int,
        typer.Option(
            min=32, help="Smallest random crop, in pack pixels (the largest is the pack side)."
        ),
    ] = 96,
    pack_side: Annotated[
        int, typer.Option(min=64, help="Side of the square crops kept of each photo.")
    ] = 224,
    workers: Annotated[int, typer.Option(min=1, help="Threads preparing training batches.")] = 1,
    time_budget: Annotated[
        float | None,
        typer.Option(
            min=0.5,
            help="Minutes to train for: the learning rate follows a cosine over the "
            "epochs that fit, and --epochs becomes an upper bound.",
        ),
    ] = None,
    freeze_encoder: Annotated[
        bool,
        typer.Option(
            "--freeze-encoder",
            help="Keep the ImageNet encoder as loaded; train only the "
            "decoder (less overfitting on few photos).",
        ),
    ] = False,
    tune_encoder: Annotated[
        bool,
        typer.Option(
            "--tune-encoder",
            help="Train the ImageNet encoder's weights too, its batch norm kept as loaded "
            "(fine-tuning, e.g. from --init-weights at a low learning rate).",
        ),
    ] = False,
    weight_decay: Annotated[
        float, typer.Option(min=0.0, help="Decoupled weight decay (AdamW); 0 is plain Adam.")
    ] = 0.0,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Folder to keep the decoded photo packs in between runs.")
    ] = None,
    rebalance: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Class rebalancing: 0.5 is Zhang et al.'s, 1 turns it off "
            "(every colour bin weighs the same).",
        ),
    ] = 0.5,
    init_weights: Annotated[
        Path | None,
        typer.Option(
            help="Start from another run's best.weights.h5 (same photos, so the same colour "
            "bins, and the same --width)."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in RUN_DIR from its last checkpoint.")
    ] = False,
) -> None:
    """Train the colourisation network on a folder of colour photos.

    Each photo is turned grey with OpenCV; the network learns its a*b* colour from its L*.
    Progress is printed once per epoch; a checkpoint and a log row are written after each.
    """
    if size % 32:
        fail("--size must be a multiple of 32")
    if not resume and (run_dir / "run.json").exists():
        fail(f"{run_dir}: a run is already there (use --resume to continue it)")
    if resume and not (run_dir / "checkpoint.keras").exists():
        fail(f"{run_dir}: no checkpoint to resume from")
    if not resume:
        for source in (photos, *([val] if val else [])):
            _photo_source(source)
    _need_keras("train")
    from coloi.training.encoders import ENCODERS
    from coloi.training.train import TrainConfig

    if encoder not in ENCODERS:
        fail(f"--encoder {encoder}: choose one of {', '.join(ENCODERS)}")
    if freeze_encoder and tune_encoder:
        fail("--freeze-encoder and --tune-encoder: choose one")
    from coloi.training.train import train as train_run

    config = TrainConfig(
        train_dir=str(photos),
        val_dir=str(val) if val else None,
        size=size,
        batch_size=batch_size,
        epochs=epochs,
        learning_rate=learning_rate,
        pretrained=str(pretrained) if pretrained else None,
        width=width,
        cache_dir=str(cache_dir) if cache_dir else None,
        rebalance=rebalance,
        init_weights=str(init_weights) if init_weights else None,
        encoder=encoder,
        pack_side=pack_side,
        workers=workers,
        min_crop=min_crop,
        time_budget_min=time_budget,
        freeze_encoder=freeze_encoder,
        tune_encoder=tune_encoder,
        weight_decay=weight_decay,
    )
    train_run(run_dir, None if resume else config, resume, say=typer.echo)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A training run folder.")],
    model_dir: Annotated[
        Path, typer.Argument(help="Model folder to write into (its manifest.json is updated).")
    ],
    calibration: Annotated[Path, typer.Option(help="Colour photos to calibrate int8 on.")],
    check: Annotated[Path, typer.Option(help="Colour photos to compare int8 with float on.")],
    name: Annotated[str, typer.Option(help="Model name in the manifest.")] = "coloi",
    temperature: Annotated[
        str,
        typer.Option(
            help="Read-out temperature: 1 = mean (muted), lower = towards the mode; 'auto' "
            "chooses temperature, prior boost and chroma gain for the best PSNR on half of "
            "the --check photos whose colourfulness ratio reaches --colour-floor."
        ),
    ] = "auto",
    prior_boost: Annotated[
        float,
        typer.Option(
            min=0.0, max=2.0, help="Tilt towards rarer colours (with a fixed --temperature)."
        ),
    ] = 0.0,
    chroma_gain: Annotated[
        float,
        typer.Option(
            min=0.5, max=3.0, help="Scale of the predicted a*b* (with a fixed --temperature)."
        ),
    ] = 1.0,
    colour_floor: Annotated[
        float, typer.Option(help="Colourfulness ratio the automatic read-out must reach.")
    ] = 0.9,
    size: Annotated[int, typer.Option(help="Fixed input size of the models.")] = 256,
) -> None:
    """Export a run's best weights as the Keras model and its int8 TFLite twin.

    Also checks that the int8 model stays close to the float one, and writes both models'
    manifest entries (sha256, input size, read-out, training record).
    """
    if not (run_dir / "run.json").is_file():
        raise TrainingError(f"{run_dir}: not a training run (it has no run.json)")
    for source in (calibration, check):
        _photo_source(source)
    _need_keras("export")
    from coloi.training.export import export as export_run
    from coloi.training.network import ReadOut

    readout = None
    if temperature != "auto":
        try:
            readout = ReadOut(float(temperature), prior_boost, chroma_gain)
        except ValueError:
            fail(f"--temperature must be a number or 'auto', not {temperature!r}")
        if not 0.05 <= readout.temperature <= 2.0:
            fail("--temperature must be between 0.05 and 2")
    export_run(
        run_dir,
        model_dir,
        name,
        readout,
        size,
        calibration,
        check,
        colour_floor=colour_floor,
        say=typer.echo,
    )


def _finite(value: Any) -> Any:
    """``value`` with every infinite or NaN float made None: JSON has no Infinity (a PSNR of
    identical pictures) and no NaN, and strict parsers refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    truth: Annotated[Path, typer.Argument(help="Folder of colour photos (the truth).")],
    backend: BackendOption = "auto",
    model_dir: ModelDirOption = None,
    model: ModelOption = None,
    threads: ThreadsOption = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N photos.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    sheet: Annotated[
        Path | None,
        typer.Option(
            help="Write a picture with rows grey | coloi | truth (format from the suffix)."
        ),
    ] = None,
    sheet_rows: Annotated[int, typer.Option(min=1)] = 12,
    by: Annotated[
        str,
        typer.Option(
            help="Also report per group of photos: 'folder' (each subfolder), 'prefix' (the name "
            "up to its first '_', e.g. a source) or 'none'."
        ),
    ] = "none",
    pre: PreOption = None,
    post: PostOption = None,
) -> None:
    """Measure colourisation of grey copies of colour photos against the originals.

    Reports PSNR (RGB), AuC of the a*b* error (thresholds 0-150), colourfulness as a ratio to
    the truth's, false colour (near-neutral pixels made clearly coloured) and wrong hue (coloured
    pixels more than 90 degrees off), each beside the grey baseline (a* = b* = 0).
    """
    from coloi.batch import SUFFIX_FORMAT
    from coloi.discovery import find_photos
    from coloi.evaluate import GROUPINGS, contact_sheet
    from coloi.evaluate import evaluate as run_eval
    from coloi.imageio import encode_photo, write_atomically

    if by not in GROUPINGS:
        fail(f"--by {by}: choose one of {', '.join(GROUPINGS)}")
    files = [path for path in find_photos(truth) if path.is_file()][:limit]
    if not files:
        fail(f"{truth}: no photos found")
    colouriser = _colouriser(ctx, backend, model_dir, model, threads, pre, post)
    result = run_eval(files, colouriser.pipeline, sheet_rows if sheet else 0, root=truth, by=by)
    if sheet:
        sheet_format = SUFFIX_FORMAT.get(sheet.suffix.lower(), "png")
        write_atomically(
            sheet, encode_photo(contact_sheet(result.rows), sheet_format), overwrite=True
        )
    if as_json:
        typer.echo(json.dumps(_finite(result.as_dict()), indent=2, allow_nan=False))
        return
    typer.echo(f"{result.photos} photos, backend {colouriser.backend.name}")
    rows = [("all", result.photos, result.coloi, result.grey)]
    rows += [
        (name, group.photos, group.coloi, group.grey_baseline)
        for name, group in result.groups.items()
    ]
    typer.echo(
        f"{'photos':<18}{'n':>5}{'PSNR dB':>9}{'(grey)':>8}{'AuC':>8}{'(grey)':>8}"
        f"{'colour':>8}{'false':>8}{'hue':>8}"
    )
    for name, count, ours, grey in rows:
        typer.echo(
            f"{name[:17]:<18}{count:>5}{ours['psnr']:>9.2f}{grey['psnr']:>8.2f}"
            f"{ours['auc']:>8.4f}{grey['auc']:>8.4f}{ours['colourfulness_ratio']:>8.3f}"
            f"{ours['false_colour']:>8.2%}{ours['wrong_hue']:>8.2%}"
        )
    typer.echo(
        "colour: colourfulness / truth's; false: near-neutral pixels made clearly "
        "coloured; hue: coloured pixels over 90 degrees off"
    )
