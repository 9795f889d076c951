#!/bin/bash
# Before (af762c2, /tmp/pen-base) and after (this branch), interleaved in one run.
cd /work/wt-pen && . .venv/bin/activate
export OMP_NUM_THREADS=1
for i in 1 2 3; do
  if [ $((i % 2)) -eq 1 ]; then order="base new"; else order="new base"; fi
  for which in $order; do
    if [ $which = base ]; then tree=/tmp/pen-base; else tree=/work/wt-pen; fi
    echo "=== round $i $which (uptime: $(cat /proc/loadavg))"
    python $tree/benchmarks/penalty_overhead.py --repeats 3 --steps 20 --warmup 5 2>&1 | grep -v Warning | tail -6
  done
done > /tmp/ab/wall.log 2>&1
for i in 1 2; do
  for which in base new; do
    echo "=== callgrind round $i $which (load: $(cat /proc/loadavg))"
    if [ $which = base ]; then PYTHONPATH=/tmp/pen-base timeout 1500 python -m benchmarks.callback_overhead --instructions-only --cg-steps 4 --cg-repeats 3; else timeout 1500 python -m benchmarks.callback_overhead --instructions-only --cg-steps 4 --cg-repeats 3; fi
  done
done > /tmp/ab/cg.log 2>&1
echo done > /tmp/ab/done
