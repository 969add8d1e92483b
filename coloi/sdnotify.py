"""systemd's service notification protocol (sd_notify), for ``Type=notify`` units.

A no-op outside systemd (when ``NOTIFY_SOCKET`` is not set), so the daemon runs the same way
from a terminal.
"""

from __future__ import annotations

import contextlib
import os
import socket


class Notifier:
    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        self.address = address or None
        self.socket: socket.socket | None = None
        if self.address:
            self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        # Ping at half the interval systemd expects, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval = usec / 2e6 if usec else None

    def notify(self, **fields: str | int) -> None:
        if self.socket is None or self.address is None:
            return
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        # systemd gone or its socket full: notifications must never stop the work.
        with contextlib.suppress(OSError):
            self.socket.sendto(message.encode(), self.address)

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
