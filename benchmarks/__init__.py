"""lightning_reg's benchmarks: each one measures a case against its baseline in the same process.

Run all of them with ``python -m benchmarks`` (``--quick`` for a smoke run), or one with
``python -m benchmarks.<name>``: ``callback_overhead``, ``floor``, ``augment_throughput``,
``sweep_parallelism``, ``cifar_cnn``, ``sweep_pruning``, ``real_models``. Each prints a table, writes JSON next to it and ends with its ratios.
``keras_parity`` (accuracy, not speed: the source's Keras MLP against ``experiment=seed003_mnist_mlp``; needs the
``parity`` extra) is run on its own with ``python -m benchmarks.keras_parity`` and is not part of the suite.
"""

BENCHMARKS = (
    "callback_overhead",
    "floor",
    "augment_throughput",
    "sweep_parallelism",
    "cifar_cnn",
    "sweep_pruning",
    "real_models",
)
