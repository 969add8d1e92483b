"""Options of steps and backends: declared once as ``Option`` class attributes, set by users as
``NAME:key=value,key=value`` (``--pre``, ``--post``, ``--backend``, or the config file), parsed
and checked before any photo is read, and listed by ``coloi plugins --options``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from coloi.errors import OptionError

T = TypeVar("T")


@dataclass(frozen=True)
class Option(Generic[T]):
    """One option of a step or a backend: its type (float, int, str or bool), default, help
    text and allowed range or choices.

    Declared as a class attribute; on an instance the attribute reads as the parsed value, so
    type checkers see ``self.amount`` as a float, not an Option.
    """

    kind: type[T]
    default: T
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None

    def parse(self, owner: str, key: str, text: Any, error: type[OptionError] = OptionError) -> Any:
        """``text`` (a string from the command line, or a config value) as a ``kind``, checked;
        ``error`` (naming ``owner``, e.g. "step 'denoise'", and the key) if it is not one."""
        try:
            if self.kind is bool and isinstance(text, str):
                if text.lower() not in {"true", "false", "yes", "no", "1", "0", "on", "off"}:
                    raise ValueError(text)
                value: Any = text.lower() in {"true", "yes", "1", "on"}
            else:
                value = self.kind(text)  # type: ignore[call-arg]  # float, int or str
        except (TypeError, ValueError):
            raise error(f"{owner}: option {key}={text!r} is not a {self.kind.__name__}") from None
        if self.kind is float and not math.isfinite(value):
            # nan passes every range check (all comparisons are false) and paints white.
            raise error(f"{owner}: option {key}={text} is not a finite number")
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            raise error(
                f"{owner}: option {key}={value} is outside [{self.minimum}, {self.maximum}]"
            )
        if self.choices is not None and value not in self.choices:
            raise error(
                f"{owner}: option {key}={value!r} is not one of {', '.join(map(str, self.choices))}"
            )
        return value

    def describe(self, name: str) -> dict[str, Any]:
        """The option as ``coloi plugins --options --json`` lists it."""
        return {
            "name": name,
            "type": self.kind.__name__,
            "default": self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "choices": list(self.choices) if self.choices is not None else None,
            "help": self.help,
        }

    @overload
    def __get__(self, instance: None, owner: type) -> Option[T]: ...

    @overload
    def __get__(self, instance: object, owner: type) -> T: ...

    def __get__(self, instance: object | None, owner: type) -> Option[T] | T:
        # Step.__init__ stores every parsed value on the instance, which shadows this
        # non-data descriptor; the default is the answer only if that did not happen.
        return self if instance is None else self.default


def declared_options(cls: type) -> dict[str, Option[Any]]:
    """A class's options by name, from its (and its bases') ``Option`` class attributes."""
    found: dict[str, Option[Any]] = {}
    for klass in reversed(cls.__mro__):
        found.update({k: v for k, v in vars(klass).items() if isinstance(v, Option)})
    return found


def apply_options(
    target: object, owner: str, given: Mapping[str, Any], error: type[OptionError] = OptionError
) -> None:
    """Parse ``given`` with ``target``'s declared options and set every option (the given
    value, else its default) as an attribute of ``target``; an unknown key is ``error``."""
    declared = declared_options(type(target))
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise error(
            f"{owner}: unknown option {unknown[0]!r} (known: {', '.join(declared) or 'none'})"
        )
    for key, option in declared.items():
        value = option.parse(owner, key, given[key], error) if key in given else option.default
        setattr(target, key, value)


def parse_spec(
    spec: str, what: str = "step", error: type[OptionError] = OptionError
) -> tuple[str, dict[str, str]]:
    """``"name:key=value,key=value"`` -> ("name", {"key": "value", ...}); ``what`` ("step" or
    "backend") names it in errors."""
    name, _, rest = spec.partition(":")
    options: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise error(f"{what} {name!r}: option {pair!r} is not key=value")
        options[key.strip()] = value.strip()
    if not name.strip():
        raise error(f"{what} spec {spec!r} has no name")
    return name.strip(), options
