"""Running the application: the listening socket, uvicorn, systemd's readiness, signals."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from coloi.errors import ColoiError
from coloi.sdnotify import Notifier

log = logging.getLogger("coloi")
# Tokens shorter than this are guessable by anyone on the network who can send requests.
MIN_TOKEN_LENGTH = 16
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (127.0.0.0/8, ::1 or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_access(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token, or with a guessable one."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ColoiError(
            f"--token must be at least {MIN_TOKEN_LENGTH} characters (make one "
            f"with: python3 -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    if token is None and not is_loopback(host):
        raise ColoiError(
            f"--host {host} lets other machines in: give --token (or "
            f"COLOI_TOKEN) so that only those who have it can use the server"
        )


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: any free one), before the model loads, so
    that a port already in use fails at once with one line."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise ColoiError(f"cannot listen on {host}:{port} ({error})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise ColoiError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None
    return sock


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # SIGTERM, SIGHUP or Ctrl-C: answer the requests in hand, then exit 0, as coloi watch
        # does; uvicorn's own handler would raise the signal again and die by it.
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def run_server(app: Any, sock: socket.socket, access_log: bool = True) -> None:
    """Serve ``app`` on ``sock`` until a stop signal; tells systemd when it is ready."""
    logging.getLogger("uvicorn").handlers[:] = log.handlers
    logging.getLogger("uvicorn").propagate = False
    # uvicorn's start-up chatter is left out; its warnings, errors and access lines stay.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(log.level)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=access_log,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    server = _Server(config)
    host, port = sock.getsockname()[:2]
    where = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    notifier = Notifier()

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not (server.started or task.done()):
            await asyncio.sleep(0.02)
        if server.started:
            log.info("serving on %s", where)
            notifier.notify(ready=1, status=f"serving on {where}")
        await task
        notifier.notify(stopping=1)

    try:
        asyncio.run(serve())
    finally:
        notifier.close()
        sock.close()
