"""Reading an uploaded photo: the raw body (``Content-Type: image/...``) or the multipart
field ``file``, never more than the size limit.

The limit is enforced while reading, not after: a declared ``Content-Length`` over it is
refused before a byte is read, and a body that grows past it (chunked, or lying about its
length) is refused at the chunk that crosses it. Multipart bodies are parsed as they stream
in, in memory: no temporary file is ever written, so none can be left behind.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect

FIELD = "file"
# Room in a multipart body for its boundaries, part headers and small fields.
MULTIPART_OVERHEAD = 64 * 1024
RAW_TYPES = ("application/octet-stream",)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\"\\]")


# After an early answer, what is left of the body is read and dropped for at most this long.
LINGER_SECONDS = 10.0


class Body:
    """A request's body stream, read once, that knows whether it was read to its end.

    A client sends its whole body before it reads the answer; if the server answers early
    (503, 401, 413...) and closes with the rest of the body unread, the kernel resets the
    connection and the client may never see the answer. :meth:`discard` reads and drops the
    rest first (within a bound, as web servers' "lingering close" does).
    """

    def __init__(self, stream: AsyncIterator[bytes], expects_continue: bool) -> None:
        self._stream = stream
        # With "Expect: 100-continue" the client sends nothing until the body is asked for:
        # an early answer needs no draining (and draining would ask for the body).
        self.finished = expects_continue

    def __aiter__(self) -> Body:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await anext(self._stream)
        except StopAsyncIteration:
            self.finished = True
            raise

    async def discard(self, limit: int, seconds: float = LINGER_SECONDS) -> None:
        """Read and drop the rest of the body, up to ``limit`` bytes or ``seconds``."""
        total = 0
        try:
            async with asyncio.timeout(seconds):
                while not self.finished and total <= limit:
                    total += len(await anext(self))
        except (StopAsyncIteration, TimeoutError, ClientDisconnect):
            pass


class UploadError(Exception):
    """An upload that cannot be taken: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Upload:
    """The photo's bytes and the name its sender gave it (for messages and the download's
    name only: it is never opened)."""

    data: bytes
    name: str = "upload"


def safe_name(filename: str) -> str:
    """The last part of a client's file name, without control characters or quotes."""
    name = _UNSAFE.sub("", PurePosixPath(filename.replace("\\", "/")).name).strip()
    return name[:200] or "upload"


def too_large(name: str, limit: int) -> UploadError:
    return UploadError(413, f"{name}: upload is over the limit of {limit:,} bytes")


async def read_upload(
    content_type: str, content_length: str | None, body: AsyncIterator[bytes], max_bytes: int
) -> Upload:
    """The photo in a request with these headers and this body stream, or
    :class:`UploadError` (413 over ``max_bytes``, 415 not an image type, 400 malformed)."""
    media, params = parse_options_header(content_type)
    kind = media.decode("latin-1").lower()
    if kind == "multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise UploadError(400, "multipart body without a boundary")
        return await _multipart(boundary, content_length, body, max_bytes)
    if kind.startswith("image/") or kind in RAW_TYPES:
        return Upload(
            b"".join([chunk async for chunk in _limited("upload", content_length, body, max_bytes)])
        )
    raise UploadError(
        415,
        f"send the photo as the body with Content-Type image/... or as the "
        f"multipart field '{FIELD}', not as {kind or 'no Content-Type'}",
    )


async def _limited(
    name: str, content_length: str | None, body: AsyncIterator[bytes], limit: int
) -> AsyncIterator[bytes]:
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise too_large(name, limit)
    total = 0
    async for chunk in body:
        total += len(chunk)
        if total > limit:
            raise too_large(name, limit)
        yield chunk


@dataclass
class _Form:
    """What the multipart callbacks collect."""

    max_bytes: int
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    disposition: bytes = b""
    in_file: bool = False
    found: bool = False
    name: str = "upload"
    size: int = 0
    chunks: list[bytes] = field(default_factory=list)
    ended: bool = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self.header_field).lower() == b"content-disposition":
            self.disposition = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self.disposition)
        self.disposition = b""
        self.in_file = params.get(b"name") == FIELD.encode()
        if self.in_file:
            if self.found:
                raise UploadError(400, f"one photo per request: the form has two '{FIELD}' fields")
            self.found = True
            filename = params.get(b"filename", b"").decode("utf-8", "replace")
            self.name = safe_name(filename) if filename else "upload"

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.size += end - start
            if self.size > self.max_bytes:
                raise too_large(self.name, self.max_bytes)
            self.chunks.append(data[start:end])

    def on_part_end(self) -> None:
        self.in_file = False

    def on_end(self) -> None:
        self.ended = True


async def _multipart(
    boundary: bytes, content_length: str | None, body: AsyncIterator[bytes], max_bytes: int
) -> Upload:
    form = _Form(max_bytes)
    callbacks = {
        name: getattr(form, name)
        for name in (
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
            "on_end",
        )
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in _limited("upload", content_length, body, max_bytes + MULTIPART_OVERHEAD):
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as error:
        raise UploadError(400, f"malformed multipart body ({error})") from None
    if not form.ended:  # cut short: the photo in it may be too
        raise UploadError(400, "multipart body ends before its closing boundary")
    if not form.found:
        raise UploadError(400, f"no field '{FIELD}' in the form: send the photo as '{FIELD}'")
    return Upload(b"".join(form.chunks), form.name)
