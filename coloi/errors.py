"""coloi's exceptions: one tree, so that one place (the CLI or the daemon) turns them into
one-line messages. Every message names the thing it is about and says what went wrong."""

from __future__ import annotations

from pathlib import Path, PurePath


class ColoiError(Exception):
    """Base of every error coloi reports to a user."""


def shown(name: str | PurePath) -> str:
    """A file name as it may appear in a message or a log line: quoted, with its control
    characters escaped, when it has any (a newline in a name would otherwise forge a line)."""
    text = str(name)
    return text if text.isprintable() else repr(text)


class PhotoError(ColoiError):
    """A photo could not be read, colourised or written; names the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{shown(path)}: {reason}")
        self.path = Path(path)
        self.reason = reason

    def __reduce__(self) -> tuple[type[PhotoError], tuple[Path, str]]:
        # Rebuilt from path and reason, so that it crosses processes (a Ray worker's outcome).
        return type(self), (self.path, self.reason)


class UnreadablePhoto(PhotoError):
    """The input is missing, empty, truncated, not an image or in an unsupported form."""


class NotAPhoto(UnreadablePhoto):
    """The input is not an image at all, or one in a format coloi does not read (as opposed
    to a damaged photo of a format it does read)."""


class MissingPhoto(UnreadablePhoto):
    """The input is not there: never was, or was removed before it could be read."""


class PhotoTooLarge(UnreadablePhoto):
    """The input is over a configured limit (pixels or bytes)."""


class PhotoTimeout(PhotoError):
    """The photo took longer than the daemon's per-photo time limit and was abandoned."""


class OutputExists(PhotoError):
    """The output is already there and overwriting was not asked for."""


class UnwritableOutput(PhotoError):
    """The output could not be written (permissions, full disk, bad folder)."""


class ModelError(ColoiError):
    """A model is missing from the manifest, unreadable, or fails its integrity check."""


class BackendUnavailable(ColoiError):
    """A backend cannot run here (its framework is not installed, or it is unknown)."""


class PluginError(ColoiError):
    """A plugin failed to load or registered something invalid or duplicated."""


class OptionError(ColoiError):
    """A step or a backend was given an unknown or invalid option."""


class StepOptionError(OptionError):
    """A preprocess or postprocess step was given an unknown or invalid option."""


class BackendOptionError(OptionError):
    """A backend was given an unknown or invalid option."""


class TrainingError(ColoiError):
    """A training run, or the photos to train, export or measure on, are missing or unusable."""
