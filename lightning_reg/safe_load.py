"""Load a checkpoint's tensors without running any code pickled in it.

``torch.load(path, weights_only=False)`` unpickles anything, so a checkpoint a user hands us could run code.
Lightning checkpoints also hold the model's hyperparameters, which may be arbitrary objects (an optimizer
factory, a partial), so a plain ``weights_only=True`` load refuses many of our own checkpoints. Here every
global that torch's weights-only unpickler does not already allow is replaced by an inert stand-in (an object
that takes any arguments and does nothing), and the file is loaded with ``weights_only=True``: tensors,
numbers, strings and containers come back as they are, and nothing named in the file is ever imported or
called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["Inert", "load_checkpoint_tensors"]


class Inert:
    """What an unknown pickled object becomes: it keeps the name it stood for, and does nothing.

    Example:
        >>> Inert(1, 2, key=3)._lightning_reg_inert
        True
    """

    _lightning_reg_inert = True
    qualified_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<not loaded: {self.qualified_name}>"


def _stand_in(qualified: str) -> type:
    return type(qualified.rsplit(".", 1)[-1], (Inert,), {"qualified_name": qualified})


def load_checkpoint_tensors(path: str | Path) -> dict[str, Any]:
    """``torch.load(path)`` with ``weights_only=True``; objects torch does not allow come back as :class:`Inert`.

    Example:
        >>> import functools, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "c.ckpt")
        >>> torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": {"f": functools.partial(print, 1)}}, path)
        >>> ckpt = load_checkpoint_tensors(path)
        >>> ckpt["state_dict"]["w"].tolist(), type(ckpt["hyper_parameters"]["f"]).__name__
        ([1.0, 1.0], 'partial')
        >>> ckpt["hyper_parameters"]["f"]
        <not loaded: functools.partial>
    """
    from torch import serialization

    if not hasattr(serialization, "get_unsafe_globals_in_checkpoint"):  # torch < 2.5: plain weights-only load
        return torch.load(str(path), map_location="cpu", weights_only=True)
    import pickle

    from lightning_reg.errors import ConfigError

    try:
        unsafe = serialization.get_unsafe_globals_in_checkpoint(str(path))
        with serialization.safe_globals([(_stand_in(name), name) for name in unsafe]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch refuses some modules outright (os, sys, ...) even as stand-ins: nothing was run.
        reason = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line), str(err).splitlines()[0])
        raise ConfigError(f"checkpoint {str(path)!r} cannot be read safely, and was not run: {reason}") from None
