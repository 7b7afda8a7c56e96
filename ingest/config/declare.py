"""How a setting is declared: one `setting(...)` per field of `Settings` says everything about it.

A declaration holds the environment variable's name, the default, the bounds and the sentence that
documents it; the field's type is the default's type. From it come the field itself, the parsing
(with type and bounds checks whose error names the variable, so a bad deployment stops at start-up
instead of at the first job) and the README's configuration row. Nothing else describes a setting.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

T = TypeVar("T")

_KEY: Final = "ingest.setting"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
# An empty flag has always meant "off"; anything else unknown is a typo worth stopping for.
_FALSE: Final = frozenset({"", "0", "false", "no", "off"})

Scalar = str | int | float | bool
Value = Scalar | tuple[str, ...] | frozenset[str]


class ConfigError(ValueError):
    """A variable holds a value the service cannot run with; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One environment variable: what it is called, holds by default, may hold and means."""

    env: str
    default: Value
    help: str
    minimum: int | float | None = None
    maximum: int | float | None = None
    choices: tuple[str, ...] = ()
    separator: str = ","
    # Applied after the type and bounds checks: a normalisation (strip a slash) or a check that
    # raises ValueError (a key template without {job_id}); it may not change the type.
    finish: Callable[[Any], Any] | None = None

    @property
    def text(self) -> str:
        """The default as one would write it in the environment (and the README shows it)."""
        return to_text(self.default, self.separator)

    def parse(self, text: str) -> Value:
        try:
            value = self._convert(text)
            if self.finish is not None:
                value = self.finish(value)
        except ConfigError:
            raise
        except ValueError as error:
            raise ConfigError(f"{self.env}: {error}") from None
        return value

    def _convert(self, text: str) -> Value:
        kind = type(self.default)
        if kind is bool:
            word = text.strip().lower()
            if word not in _TRUE | _FALSE:
                raise self._refuse(text, "true or false")
            return word in _TRUE
        if kind in (int, float):
            try:
                number = kind(text.strip())
            except ValueError:
                raise self._refuse(text, "an integer" if kind is int else "a number") from None
            if not math.isfinite(number):
                raise self._refuse(text, "a finite number")
            if self.minimum is not None and number < self.minimum:
                raise self._refuse(text, f"at least {to_text(self.minimum)}")
            if self.maximum is not None and number > self.maximum:
                raise self._refuse(text, f"at most {to_text(self.maximum)}")
            return number
        if kind is tuple or kind is frozenset:
            items = (item.strip() for item in text.split(self.separator))
            return kind(item for item in items if item)
        if self.choices:
            word = text.strip().lower()
            match = next((choice for choice in self.choices if choice.lower() == word), None)
            if match is None:
                raise self._refuse(text, "one of " + ", ".join(self.choices))
            return match
        return text

    def _refuse(self, text: str, wanted: str) -> ConfigError:
        return ConfigError(f"{self.env} must be {wanted}, not {text!r}")


def setting(env: str, default: T, help: str, **rules: Any) -> T:
    """Declare a `Settings` field (see `Setting` for the rules: minimum, maximum, choices, ...)."""
    spec = Setting(env, default, help, **rules)  # type: ignore[arg-type]
    # Typed as the value so that `port: int = setting(...)` checks; the dataclass sees a field.
    field: T = dataclasses.field(metadata={_KEY: spec})
    return field


def declared(fields: Iterable[dataclasses.Field[Any]]) -> dict[str, Setting]:
    """Field name -> its declaration, in declaration order (the README's order)."""
    return {field.name: field.metadata[_KEY] for field in fields if _KEY in field.metadata}


def read(specs: Mapping[str, Setting], environ: Mapping[str, str]) -> dict[str, Any]:
    """Every declared setting parsed from `environ` (a missing variable takes its default)."""
    return {name: spec.parse(environ.get(spec.env, spec.text)) for name, spec in specs.items()}


def to_text(value: Value | float, separator: str = ",") -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, frozenset):
        return separator.join(sorted(value))
    if isinstance(value, tuple):
        return separator.join(value)
    return str(value)
