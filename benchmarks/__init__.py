"""lightning_reg's benchmarks: each one measures a case against its baseline in the same process.

Run all of them with ``python -m benchmarks`` (``--quick`` for a smoke run), or one with
``python -m benchmarks.<name>``: ``callback_overhead``, ``floor``, ``augment_throughput``,
``sweep_parallelism``, ``cifar_cnn``, ``sweep_pruning``, ``real_models``. Each prints a table, writes JSON next to it and ends with its ratios.
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
