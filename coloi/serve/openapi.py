"""The OpenAPI 3.1 description of ``coloi serve``'s API, served at ``/openapi.json``.

Written out rather than generated: the API is four routes, and its errors, limits and body
forms are what a client needs to know (``tests/test_serve.py`` checks that the routes and
this document agree).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coloi import __version__
from coloi.imageio import FORMAT_SUFFIX

if TYPE_CHECKING:
    from coloi.serve.app import ServeSettings

_ERROR = {"description": "", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/Error"}}}}


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {**_ERROR, "description": description, **extra}


def openapi_document(settings: ServeSettings) -> dict[str, Any]:
    limits = settings.limits
    unauthorised = {"401": _error("The token is missing or wrong.")} if settings.token else {}
    security = [{"bearer": []}] if settings.token else []
    photo_types = {f"image/{kind}": {"schema": {"type": "string", "format": "binary"}}
                   for kind in ("jpeg", "png", "tiff", "webp", "bmp", "gif")}
    return {
        "openapi": "3.1.0",
        "info": {"title": "coloi", "version": __version__,
                 "description": "Colourise black-and-white photographs."},
        "security": security,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["error"],
                                  "properties": {"error": {"type": "string"}}}}},
        "paths": {
            "/v1/colourise": {"post": {
                "summary": "Colourise one photo",
                "description": (
                    "The photo is the raw body (Content-Type image/...) or the multipart field "
                    "`file`. The answer is the colourised photo, in the input's format unless "
                    "`format` says otherwise (a GIF gives PNG), with EXIF orientation applied, "
                    "EXIF and an RGB ICC profile carried over, and 16 bits kept in PNG and "
                    f"TIFF. Limits: {limits.max_bytes:,} bytes, {limits.max_pixels:,} pixels."),
                "parameters": [
                    {"name": "format", "in": "query", "schema": {
                        "type": "string", "enum": list(FORMAT_SUFFIX)},
                     "description": "Output format (default: the input's)."},
                    {"name": "quality", "in": "query", "schema": {
                        "type": "integer", "minimum": 1, "maximum": 100,
                        "default": settings.quality}, "description": "JPEG/WebP quality."},
                    {"name": "pre", "in": "query", "schema": {
                        "type": "array", "items": {"type": "string"}}, "explode": True,
                     "description": "Preprocess step NAME[:key=value,...], repeated in order, "
                                    "as coloi run --pre; given at all (even empty), they "
                                    "replace the server's."},
                    {"name": "post", "in": "query", "schema": {
                        "type": "array", "items": {"type": "string"}}, "explode": True,
                     "description": "Postprocess steps, as pre (coloi run --post)."},
                    {"name": "vividness", "in": "query", "schema": {
                        "type": "number", "minimum": 0, "maximum": 5, "default": 1},
                     "description": "Chroma gain applied last (the saturation step): 0 grey, "
                                    "1 as the model says, above 1 more vivid."}],
                "requestBody": {"required": True, "content": {
                    **photo_types,
                    "application/octet-stream": {"schema": {
                        "type": "string", "format": "binary"}},
                    "multipart/form-data": {"schema": {
                        "type": "object", "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}}}}}},
                "responses": {
                    "200": {"description": "The colourised photo.",
                            "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
                            "content": {f"image/{kind}": {"schema": {
                                "type": "string", "format": "binary"}}
                                for kind in FORMAT_SUFFIX}},
                    "400": _error("The photo cannot be read (damaged, truncated), or an "
                                  "option is wrong."),
                    **unauthorised,
                    "413": _error("The upload is over the byte or pixel limit."),
                    "415": _error("Not an image, or not in a format coloi reads."),
                    "503": _error("Every worker is busy and the waiting line is full.",
                                  headers={"Retry-After": {
                                      "description": "Seconds to wait before trying again.",
                                      "schema": {"type": "integer"}}})}}},
            "/v1/health": {"get": {
                "summary": "The backend, its model and the queue",
                "responses": {"200": {"description": "The server is up.", "content": {
                    "application/json": {"schema": {"type": "object", "properties": {
                        "status": {"type": "string"}, "version": {"type": "string"},
                        "backend": {"type": "string"}, "model": {"type": ["string", "null"]},
                        "workers": {"type": "integer"}, "working": {"type": "integer"},
                        "queue": {"type": "integer"}, "capacity": {"type": "integer"},
                        "max_bytes": {"type": "integer"},
                        "max_pixels": {"type": "integer"}}}}}},
                    **unauthorised}}},
            "/v1/plugins": {"get": {
                "summary": "The installed backends and steps (coloi plugins --json)",
                "parameters": [{"name": "options", "in": "query", "schema": {
                    "type": "boolean", "default": False},
                    "description": "Also each one's options (coloi plugins --options)."}],
                "responses": {"200": {"description": "One object per backend or step.",
                                      "content": {"application/json": {"schema": {
                                          "type": "array", "items": {"type": "object"}}}}},
                              **unauthorised}}},
        },
    }
