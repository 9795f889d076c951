"""The Hydra app: the training entry point, the sweep report, the augmentation preview, and their support
(run-directory lifecycle, Hydra callbacks, DDP under Hydra, the resumable CSV logger, checks of the settings).

The commands stay ``python -m lightning_reg.train``, ``python -m lightning_reg.report`` and
``python -m lightning_reg.preview`` (thin entry modules over :mod:`~lightning_reg.app.train`,
:mod:`~lightning_reg.app.report` and :mod:`~lightning_reg.app.preview`).
"""

__all__: list[str] = []  # the modules are the API: import them by name (nothing is loaded on import)
