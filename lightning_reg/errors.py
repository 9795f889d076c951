"""Errors and argument checks shared by every public class.

Every message names the option, the allowed values and the value given, so a user can fix the call
without reading our source. All checks run in ``__init__`` or at ``setup``, before any training step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "ConfigError",
    "check_bool",
    "check_choice",
    "check_fraction",
    "check_int",
    "check_int_list",
    "check_non_negative",
    "check_range",
    "mask_secrets",
]


class ConfigError(ValueError):
    """A bad argument or config value. Subclasses :class:`ValueError` so generic handlers still catch it.

    Example:
        >>> try:
        ...     check_choice("mode", "avg", ("min", "max"))
        ... except ValueError as err:
        ...     print(type(err).__name__, err)
        ConfigError `mode` must be one of 'min', 'max'; got 'avg'.
    """


def _fmt(value: Any) -> str:
    return repr(value)


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise :class:`ConfigError`.

    Example:
        >>> check_choice("mode", "min", ("min", "max"))
        'min'
    """
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"`{name}` must be one of {', '.join(map(repr, allowed))}; got {_fmt(value)}.")
    return value


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Check that a number lies in an interval and return it as ``float``.

    Example:
        >>> check_range("p", 0.5, 0.0, 1.0, high_inclusive=False)
        0.5
    """
    lo_b = "[" if low_inclusive else "("
    hi_b = "]" if high_inclusive else ")"
    interval = f"{lo_b}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi_b}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"`{name}` must be a number in {interval}; got {_fmt(value)} ({type(value).__name__}).")
    v = float(value)
    bad = math.isnan(v)
    if low is not None:
        bad |= v < low if low_inclusive else v <= low
    if high is not None:
        bad |= v > high if high_inclusive else v >= high
    if bad:
        raise ConfigError(f"`{name}` must be in {interval}; got {_fmt(value)}.")
    return v


def check_non_negative(name: str, value: Any) -> float:
    """Shorthand for ``check_range(name, value, 0, None)``.

    Example:
        >>> check_non_negative("l2", 1e-4)
        0.0001
    """
    return check_range(name, value, 0.0, None)


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool; anything else (``"no"``, ``"false"``, ``1``, ``None``) is a ConfigError.

    ``bool("no")`` is ``True``: a string or a number is never read as a flag.

    Example:
        >>> check_bool("drop_last", False)
        False
    """
    if not isinstance(value, bool):
        raise ConfigError(f"`{name}` must be true or false (a bool); got {_fmt(value)} ({type(value).__name__}).")
    return value


def check_fraction(name: str, value: Any) -> float:
    """A fraction strictly between 0 and 1 (a float; an int is a count, not a fraction).

    Example:
        >>> check_fraction("val_split", 0.1)
        0.1
    """
    if isinstance(value, bool) or not isinstance(value, float) or not 0.0 < value < 1.0:
        raise ConfigError(
            f"`{name}` as a fraction must be a float in the open interval (0, 1); got {_fmt(value)} "
            f"({type(value).__name__})."
        )
    return value


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """Check for an integer (not a bool) within optional bounds.

    Example:
        >>> check_int("patience", 3, low=0)
        3
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"`{name}` must be an integer; got {_fmt(value)} ({type(value).__name__}).")
    if (low is not None and value < low) or (high is not None and value > high):
        rng = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ConfigError(f"`{name}` must be an integer in {rng}; got {value!r}.")
    return value


def check_int_list(name: str, value: Any, allow_empty: bool = False) -> list[int]:
    """Check for a list (any non-string iterable) of integers and return it as ``list[int]``.

    Entries go through ``int()``, as the model builders always did (``[128, 64.0]`` gives ``[128, 64]``); one
    that ``int()`` refuses is a :class:`ConfigError` naming its index.

    Example:
        >>> check_int_list("hidden_sizes", (128, 64))
        [128, 64]
        >>> check_int_list("hidden_sizes", 128)
        Traceback (most recent call last):
        ...
        lightning_reg.errors.ConfigError: `hidden_sizes` must be a list of integers; got 128.
    """
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"`{name}` must be a list of integers; got {_fmt(value)}.")
    items = list(value)
    if not items and not allow_empty:
        raise ConfigError(f"`{name}` must be a non-empty list of integers; got {_fmt(value)}.")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(int(item))
        except (TypeError, ValueError):
            raise ConfigError(f"`{name}[{i}]` must be an integer; got {_fmt(item)} ({type(item).__name__}).") from None
    return out


_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*):(?P<password>[^@\s'\"/]+)@")


def mask_secrets(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` URL in it replaced by ``***``.

    Used for what we write or print: ``metrics.json``, error messages and logs.

    Example:
        >>> mask_secrets("storage postgresql://sweep:s3cret@db:5432/optuna failed")
        'storage postgresql://sweep:***@db:5432/optuna failed'
        >>> mask_secrets("sqlite:////tmp/optuna.db")
        'sqlite:////tmp/optuna.db'
    """
    return _URL_PASSWORD.sub(r"\g<head>:***@", text)
