"""The ASGI application of ``coloi serve``: the API under ``/v1``, its OpenAPI description,
and the page at ``/``.

Every error is answered as JSON ``{"error": "..."}`` with its status: 400 a photo that cannot
be read or a bad option, 401 a missing or wrong token, 413 over the size limits, 415 not an
image, 503 (with ``Retry-After``) when the workers and their waiting line are full. Nothing a
client sends is ever used as a path: uploads stay in memory and the page's three files are
fixed routes.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from coloi import __version__
from coloi.api import Colouriser, encode_photo, read_photo
from coloi.errors import ColoiError, NotAPhoto, OptionError, PhotoError, PhotoTooLarge, PluginError
from coloi.imageio import FORMAT_SUFFIX, Limits
from coloi.serve.openapi import openapi_document
from coloi.serve.pool import Busy, WorkerPool
from coloi.serve.upload import MULTIPART_OVERHEAD, Body, Upload, UploadError, read_upload

log = logging.getLogger("coloi")

MEDIA_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "tiff": "image/tiff",
    "webp": "image/webp",
    "bmp": "image/bmp",
}
FORMAT_ALIASES = {"jpg": "jpeg", "tif": "tiff"}
QUERY_OPTIONS = ("format", "quality", "pre", "post", "vividness")
# The page's files: fixed routes, read once, so no request names a file.
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
# The page loads nothing from elsewhere, and the browser is told to refuse it if it tried.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class ServeSettings:
    """What ``coloi serve`` was told, beyond the backend and steps of its Colouriser."""

    token: str | None = None
    cors_origins: tuple[str, ...] = ()
    workers: int = 1
    queue: int = 8
    limits: Limits = field(default_factory=Limits)
    quality: int = 95


class ApiError(Exception):
    """An answer other than the photo: ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def error_status(error: ColoiError) -> int:
    """The HTTP status of a coloi error met while taking a photo."""
    if isinstance(error, PhotoTooLarge):
        return 413
    if isinstance(error, NotAPhoto):
        return 415
    if isinstance(error, PhotoError | OptionError | PluginError):
        return 400  # an unreadable photo, or a format or a step the request asked for
    return 500  # the server's own fault (its model, a plugin's code)


@dataclass(frozen=True)
class Job:
    """One request's photo and what it asked for."""

    colouriser: Colouriser
    format: str | None
    quality: int


@dataclass(frozen=True)
class Result:
    data: bytes
    format: str


def colourise_upload(job: Job, upload: Upload, limits: Limits) -> Result:
    """Decode, colourise and encode one upload (on a worker thread), as ``coloi run`` would."""
    photo = read_photo(upload.data, limits=limits, name=upload.name)
    out = job.colouriser.colourise(photo)
    fmt = job.format or ("png" if photo.format == "gif" else photo.format)
    return Result(encode_photo(out, fmt, quality=job.quality, name=upload.name), fmt)


def _number(
    query: Mapping[str, str], key: str, kind: Callable[[str], Any], low: float, high: float
) -> Any:
    text = query[key]
    try:
        value = kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ApiError(400, f"{key}={text!r} is not {noun}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise ApiError(400, f"{key}={text} is outside [{low:g}, {high:g}]")
    return value


def parse_job(request: Request, colouriser: Colouriser, quality: int) -> Job:
    """The request's query options as a Job, or 400: ``format``, ``quality``, ``pre`` and
    ``post`` (repeatable, as on the command line; given at all, they replace the server's),
    and ``vividness`` (a chroma gain: the ``saturation`` step, applied last)."""
    query = request.query_params
    unknown = sorted(set(query) - set(QUERY_OPTIONS))
    if unknown:
        raise ApiError(
            400, f"unknown query option {unknown[0]!r} (known: {', '.join(QUERY_OPTIONS)})"
        )
    fmt = query.get("format") or None
    if fmt is not None:
        fmt = FORMAT_ALIASES.get(fmt.lower(), fmt.lower())
        if fmt not in FORMAT_SUFFIX:
            raise ApiError(
                400, f"unknown format {query['format']!r} (choose from {', '.join(FORMAT_SUFFIX)})"
            )
    if "quality" in query:
        quality = _number(query, "quality", int, 1, 100)
    pre = [spec for spec in query.getlist("pre") if spec] if "pre" in query else None
    post = [spec for spec in query.getlist("post") if spec] if "post" in query else None
    if "vividness" in query:
        vividness = _number(query, "vividness", float, 0.0, 5.0)
        if vividness != 1.0:
            base = list(colouriser.pipeline.postprocess) if post is None else post
            post = [*base, f"saturation:amount={vividness}"]
    if pre is not None or post is not None:
        try:
            colouriser = colouriser.with_steps(pre=pre, post=post)
        except ColoiError as error:
            raise ApiError(error_status(error), str(error)) from None
    return Job(colouriser, fmt, quality)


def _download_name(name: str, fmt: str) -> str:
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return f"{stem or 'photo'}_colourised{FORMAT_SUFFIX[fmt]}"


def _disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_")
    return f"inline; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def create_app(
    colouriser: Colouriser, plugins: list[dict[str, Any]], settings: ServeSettings
) -> Starlette:
    """The application, on a loaded ``colouriser`` (closed when the application stops);
    ``plugins`` is what ``GET /v1/plugins`` lists (:meth:`coloi.plugin_host.Registry.describe`
    with options)."""
    pool = WorkerPool(settings.workers, settings.queue)
    token = settings.token.encode() if settings.token else None
    page = {
        path: (resources.files("coloi.serve").joinpath("static", name).read_bytes(), media)
        for path, (name, media) in PAGE_FILES.items()
    }
    document = openapi_document(settings)

    def authorise(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, credential = given.partition(" ")
        if not (
            scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(), token)
        ):
            raise ApiError(
                401,
                "a valid token is needed: send Authorization: Bearer TOKEN",
                {"WWW-Authenticate": 'Bearer realm="coloi"'},
            )

    async def colourise(request: Request) -> Response:
        expects_continue = request.headers.get("expect", "").lower() == "100-continue"
        body = Body(request.stream(), expects_continue)
        try:
            return await colourise_body(request, body)
        except ApiError:
            # The answer must reach a client that is still sending: read the rest first.
            await body.discard(settings.limits.max_bytes + MULTIPART_OVERHEAD)
            raise

    async def colourise_body(request: Request, body: Body) -> Response:
        authorise(request)
        job = parse_job(request, colouriser, settings.quality)
        try:
            with pool.slot():
                upload = await read_upload(
                    request.headers.get("content-type", ""),
                    request.headers.get("content-length"),
                    body,
                    settings.limits.max_bytes,
                )
                result = await pool.run(lambda: colourise_upload(job, upload, settings.limits))
        except ClientDisconnect:  # gone mid-upload: nobody to answer, nothing to log
            return Response(status_code=400)
        except Busy as busy:
            raise ApiError(503, str(busy), {"Retry-After": str(busy.retry_after)}) from None
        except UploadError as error:
            raise ApiError(error.status, error.message) from None
        except ColoiError as error:
            status = error_status(error)
            (log.error if status >= 500 else log.info)("%s", error)
            raise ApiError(status, str(error)) from None
        return Response(
            result.data,
            media_type=MEDIA_TYPES[result.format],
            headers={
                "Content-Disposition": _disposition(_download_name(upload.name, result.format))
            },
        )

    async def health(request: Request) -> Response:
        authorise(request)
        backend = colouriser.backend
        model = getattr(backend, "model", None)
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "backend": backend.name,
                "model": getattr(model, "name", None),
                "workers": pool.workers,
                "working": pool.working,
                "queue": pool.waiting,
                "capacity": pool.capacity,
                "max_bytes": settings.limits.max_bytes,
                "max_pixels": settings.limits.max_pixels,
                "pre": [step.name for step in colouriser.pipeline.preprocess],
                "post": [step.name for step in colouriser.pipeline.postprocess],
            }
        )

    async def plugin_list(request: Request) -> Response:
        authorise(request)
        options = request.query_params.get("options", "").lower() in ("1", "true", "yes")
        return JSONResponse(
            plugins
            if options
            else [{k: v for k, v in row.items() if k != "options"} for row in plugins]
        )

    async def openapi(request: Request) -> Response:
        return Response(json.dumps(document, indent=2), media_type="application/json")

    async def static(request: Request) -> Response:
        body, media = page[request.url.path]
        return Response(body, media_type=media, headers=PAGE_HEADERS)

    async def api_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return JSONResponse({"error": error.message}, error.status, error.headers)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        return JSONResponse({"error": error.detail.lower()}, error.status_code, error.headers)

    async def internal_error(request: Request, error: Exception) -> Response:
        log.exception("internal error on %s", request.url.path)
        return JSONResponse({"error": "internal error (see the server's log)"}, 500)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        try:
            yield
        finally:
            pool.close()
            colouriser.close()

    routes = [
        Route("/v1/colourise", colourise, methods=["POST"]),
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/plugins", plugin_list, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *(Route(path, static, methods=["GET"]) for path in PAGE_FILES),
    ]
    middleware = (
        [
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
                expose_headers=["Content-Disposition", "Retry-After"],
            )
        ]
        if settings.cors_origins
        else []
    )
    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            ApiError: api_error,
            HTTPException: http_error,
            Exception: internal_error,
        },
    )
