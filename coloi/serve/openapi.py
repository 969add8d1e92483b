"""The OpenAPI 3.1 description of ``coloi serve``'s API, served at ``/openapi.json``.

Written out rather than generated: the API is three routes, and its errors, limits and body
forms are what a client needs to know (``tests/test_serve.py`` checks that the routes and
this document agree).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coloi import __version__
from coloi.imageio import FORMAT_SUFFIX

if TYPE_CHECKING:
    from coloi.serve.app import ServeSettings

BINARY = {"schema": {"type": "string", "format": "binary"}}
READ_TYPES = ("jpeg", "png", "tiff", "webp", "bmp", "gif")
STEPS = {"type": "array", "items": {"type": "string"}}


def _error(description: str, **extra: Any) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Error"}
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def _colourise(settings: ServeSettings, unauthorised: dict[str, Any]) -> dict[str, Any]:
    limits = settings.limits
    quality = {"type": "integer", "minimum": 1, "maximum": 100, "default": settings.quality}
    form = {
        "type": "object",
        "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}},
    }
    retry_after = {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
    return {
        "summary": "Colourise one photo",
        "description": (
            "The photo is the raw body (Content-Type image/...) or the multipart field `file`. "
            "The answer is the colourised photo, in the input's format unless `format` says "
            "otherwise (a GIF gives PNG), with EXIF orientation applied, EXIF and an RGB ICC "
            "profile carried over, and 16 bits kept in PNG and TIFF. Limits: "
            f"{limits.max_bytes:,} bytes, {limits.max_pixels:,} pixels."
        ),
        "parameters": [
            _query(
                "format",
                {"type": "string", "enum": list(FORMAT_SUFFIX)},
                "Output format (default: the input's).",
            ),
            _query("quality", quality, "JPEG/WebP quality."),
            {
                **_query(
                    "pre",
                    STEPS,
                    "Preprocess step NAME[:key=value,...], repeated in "
                    "order, as coloi run --pre; given at all (even empty), "
                    "they replace the server's.",
                ),
                "explode": True,
            },
            {
                **_query("post", STEPS, "Postprocess steps, as pre (coloi run --post)."),
                "explode": True,
            },
            _query(
                "vividness",
                {"type": "number", "minimum": 0, "maximum": 5, "default": 1},
                "Chroma gain applied last (the saturation step): 0 grey, 1 as the model "
                "says, above 1 more vivid.",
            ),
        ],
        "requestBody": {
            "required": True,
            "content": {
                **{f"image/{kind}": BINARY for kind in READ_TYPES},
                "application/octet-stream": BINARY,
                "multipart/form-data": {"schema": form},
            },
        },
        "responses": {
            "200": {
                "description": "The colourised photo.",
                "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
                "content": {f"image/{kind}": BINARY for kind in FORMAT_SUFFIX},
            },
            "400": _error("The photo cannot be read (damaged, truncated), or an option is wrong."),
            **unauthorised,
            "413": _error("The upload is over the byte or pixel limit."),
            "415": _error("Not an image, or not in a format coloi reads."),
            "503": _error(
                "Every worker is busy and the waiting line is full.",
                headers={"Retry-After": retry_after},
            ),
        },
    }


def _health(unauthorised: dict[str, Any]) -> dict[str, Any]:
    fields = {
        "status": "string",
        "version": "string",
        "backend": "string",
        "model": ["string", "null"],
        "workers": "integer",
        "working": "integer",
        "queue": "integer",
        "capacity": "integer",
        "max_bytes": "integer",
        "max_pixels": "integer",
        "pre": "array",
        "post": "array",
    }
    schema = {
        "type": "object",
        "properties": {name: {"type": kind} for name, kind in fields.items()},
    }
    return {
        "summary": "The backend, its model, the queue and the limits",
        "responses": {
            "200": {
                "description": "The server is up.",
                "content": {"application/json": {"schema": schema}},
            },
            **unauthorised,
        },
    }


def _plugins(unauthorised: dict[str, Any]) -> dict[str, Any]:
    rows = {"type": "array", "items": {"type": "object"}}
    return {
        "summary": "The installed backends and steps (coloi plugins --json)",
        "parameters": [
            _query(
                "options",
                {"type": "boolean", "default": False},
                "Also each one's options (coloi plugins --options).",
            )
        ],
        "responses": {
            "200": {
                "description": "One object per backend or step.",
                "content": {"application/json": {"schema": rows}},
            },
            **unauthorised,
        },
    }


def openapi_document(settings: ServeSettings) -> dict[str, Any]:
    """The document for a server with these settings (its limits, whether it wants a token)."""
    unauthorised = {"401": _error("The token is missing or wrong.")} if settings.token else {}
    security: list[dict[str, list[str]]] = [{"bearer": []}] if settings.token else []
    error = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "coloi",
            "version": __version__,
            "description": "Colourise black-and-white photographs.",
        },
        "security": security,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": error},
        },
        "paths": {
            "/v1/colourise": {"post": _colourise(settings, unauthorised)},
            "/v1/health": {"get": _health(unauthorised)},
            "/v1/plugins": {"get": _plugins(unauthorised)},
        },
    }
