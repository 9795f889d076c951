"""The pure layer: regularization math on tensors and modules, with no Lightning and no Hydra.

- :mod:`~lightning_reg.core.penalties`: parameter selection, L1/L2/elastic penalties, max-norm;
- :mod:`~lightning_reg.core.schedules`: schedule objects (constant, linear, cosine, ...);
- :mod:`~lightning_reg.core.stopping`: early-stopping criteria (patience, Prechelt's GL/PQ/UP, baseline);
- :mod:`~lightning_reg.core.dropout`: dropout-like modules: discovery, depth scaling, injection;
- :mod:`~lightning_reg.core.drop_path`: stochastic depth (drop-path) for residual blocks that have none;
- :mod:`~lightning_reg.core.augment`: batched augmentation transforms, the CPU path, mixers, featurewise statistics.

The Lightning glue over them is in :mod:`lightning_reg.callbacks` and :mod:`lightning_reg.data`; the Hydra app in
:mod:`lightning_reg.app`.
"""

__all__: list[str] = []  # the modules are the API: import them by name (nothing is loaded on import)
