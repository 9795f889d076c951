"""The error a callback raises for a bad argument: our :class:`~lightning_reg.errors.ConfigError` (a ``ValueError``)
and Lightning's ``MisconfigurationException`` at once, so a user's handler for either catches it.

``core/`` raises plain ``ConfigError`` and stays free of Lightning; the callbacks, the Lightning glue, turn it into
this class with :func:`lightning_config_errors`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_reg.errors import ConfigError

__all__ = ["CallbackConfigError", "lightning_config_errors"]


class CallbackConfigError(ConfigError, MisconfigurationException):
    """A bad callback argument: a :class:`ConfigError` (``ValueError``) and a ``MisconfigurationException``.

    Example:
        >>> issubclass(CallbackConfigError, ValueError), issubclass(CallbackConfigError, MisconfigurationException)
        (True, True)
    """


@contextlib.contextmanager
def lightning_config_errors() -> Iterator[None]:
    """Re-raise a plain :class:`ConfigError` from the block as :class:`CallbackConfigError`, same message.

    Example:
        >>> from lightning_reg.errors import check_int
        >>> try:
        ...     with lightning_config_errors():
        ...         check_int("patience", -1, low=0)
        ... except MisconfigurationException as err:
        ...     print(type(err).__name__, err)
        CallbackConfigError `patience` must be an integer in [0, inf]; got -1.
    """
    try:
        yield
    except CallbackConfigError:
        raise
    except ConfigError as err:
        raise CallbackConfigError(str(err)) from None
