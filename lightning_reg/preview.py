"""``python -m lightning_reg.preview``: the augmentation preview. The code is :mod:`lightning_reg.app.preview`."""

from lightning_reg.app.preview import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
