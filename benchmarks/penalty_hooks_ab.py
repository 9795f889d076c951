"""Per-step cost of the penalty and constraint hooks themselves, in two checkouts, interleaved in one run.

Made for the rule-object rewrite (issue 26): it compares this checkout with another one (``--base``, e.g. a
``git worktree`` of the commit before) on the same machine, alternating child processes, so that a slow drift of
the machine's load falls on both. Each child imports ``lightning_reg`` from its checkout, fits the source
material's 784-500x5-10 MLP (batch 128, SGD) for one step with the callbacks of one case, and then times the
callbacks' own work per optimizer step, called directly ``--calls`` times after ``--warmup`` calls:

- ``WeightPenalty(l2)``, ``elastic`` (``l1`` and ``l2``), ``proximal`` and ``decoupled``: ``on_before_optimizer_step``
  followed by the optimizer step post-hook (what a training step runs, without the optimizer step itself);
- ``MaxNorm(3.0)``: the post-hook (the units are inside the ball: the check path).

Printed per case and checkout: the median over rounds of each child's median µs per step, the spread (min-max of
the rounds' medians) and the load average at the start. No result is kept in a file unless ``--json-out`` is given.

    python benchmarks/penalty_hooks_ab.py --base /tmp/pen-base [--rounds 5] [--calls 400]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = ("WeightPenalty(l2)", "elastic", "proximal", "decoupled", "MaxNorm(3.0)")
HERE = Path(__file__).resolve()


def child(root: str, calls: int, warmup: int) -> dict[str, float]:
    sys.path.insert(0, root)
    import logging
    import warnings

    import lightning.pytorch as pl
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    import lightning_reg
    from lightning_reg import MaxNorm, WeightPenalty

    assert lightning_reg.__file__.startswith(root), lightning_reg.__file__
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    class MLP(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            sizes = [784, 500, 500, 500, 500, 500, 10]
            layers: list[nn.Module] = [nn.Flatten()]
            for a, b in zip(sizes[:-1], sizes[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            self.net = nn.Sequential(*layers[:-1])

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    makers = {
        "WeightPenalty(l2)": lambda: WeightPenalty(l2=1e-4),
        "elastic": lambda: WeightPenalty(l1=1e-5, l2=1e-4),
        "proximal": lambda: WeightPenalty(l1=1e-5, mode="proximal"),
        "decoupled": lambda: WeightPenalty(l2=5e-3, mode="decoupled"),
        "MaxNorm(3.0)": lambda: MaxNorm(3.0),
    }
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(128, 1, 28, 28, generator=g), torch.randint(0, 10, (128,), generator=g))
    out: dict[str, float] = {}
    for case in CASES:
        torch.manual_seed(0)
        model, cb = MLP(), makers[case]()
        trainer = pl.Trainer(
            max_steps=1,
            callbacks=[cb],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )
        trainer.fit(model, DataLoader(data, batch_size=128))
        # Hooks stay usable after fit for this measurement: re-register the post-hooks and the trainer.
        opt = trainer.optimizers[0]
        cb.on_fit_start(trainer, model)
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3
        before = getattr(cb, "on_before_optimizer_step", None)
        is_penalty = isinstance(cb, WeightPenalty)
        times = []
        for i in range(warmup + calls):
            t0 = time.perf_counter()
            if is_penalty:
                before(trainer, model, opt)
            cb._after_optimizer_step(opt, (), {})
            cb._pending.clear() if is_penalty else None
            t1 = time.perf_counter()
            if i >= warmup:
                times.append(t1 - t0)
        cb.teardown(trainer, model, "fit")
        out[case] = statistics.median(times) * 1e6
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, help="the other checkout's root (its lightning_reg is compared)")
    parser.add_argument("--rounds", type=int, default=5, help="children per checkout, alternating")
    parser.add_argument("--calls", type=int, default=400, help="timed steps per case and child")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps per case and child")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.calls, args.warmup)))
        return {}
    roots = {"base": str(args.base.resolve()), "this": str(HERE.parents[1])}
    results: dict[str, list[dict[str, float]]] = {k: [] for k in roots}
    loads: dict[str, list[float]] = {k: [] for k in roots}
    for r in range(args.rounds):
        order = list(roots) if r % 2 == 0 else list(reversed(roots))
        for which in order:
            loads[which].append(os.getloadavg()[0])
            cmd = [sys.executable, str(HERE), "--child", roots[which], "--calls", str(args.calls)]
            cmd += ["--warmup", str(args.warmup)]
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd="/")
            results[which].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {which}: " + ", ".join(f"{c} {v:.1f} µs" for c, v in results[which][-1].items()))
    summary: dict = {"roots": roots, "rounds": args.rounds, "calls": args.calls, "cases": {}}
    print(f"\nµs per step (median over {args.rounds} children of each child's median over {args.calls} steps)")
    for case in CASES:
        row = {}
        for which in roots:
            values = [res[case] for res in results[which]]
            row[which] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        ratio = row["this"]["median"] / row["base"]["median"]
        summary["cases"][case] = {**row, "this/base": ratio}
        print(
            f"{case:<18} base {row['base']['median']:8.1f} [{row['base']['min']:.1f}-{row['base']['max']:.1f}]   "
            f"this {row['this']['median']:8.1f} [{row['this']['min']:.1f}-{row['this']['max']:.1f}]   "
            f"this/base {ratio:.3f}"
        )
    print(
        "load average at each child's start: " + ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in loads.items())
    )
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
