"""``python -m lightning_reg.report``: the sweep report. The code is :mod:`lightning_reg.app.report`."""

from lightning_reg.app.report import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
