"""``python -m lightning_reg.train``: the main job (Hydra). The code is :mod:`lightning_reg.app.train`."""

from lightning_reg.app.train import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
