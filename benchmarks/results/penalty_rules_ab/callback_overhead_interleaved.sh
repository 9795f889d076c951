#!/bin/bash
. /work/wt-pen/.venv/bin/activate
ARGS="'--no-instructions','--repeats','3','--steps','20','--epochs','1','--data-dir','/work/shared/data'"
for i in 1 2; do
  for which in base this; do
    echo "=== round $i $which (load: $(cat /proc/loadavg))"
    if [ $which = base ]; then dir=/tmp/pen-base; else dir=/work/wt-pen; fi
    (cd $dir && timeout 900 python -c "import sys; sys.argv=['x',$ARGS,'--out-dir','/tmp/ab/co_${which}_$i']; import lightning_reg; print('lightning_reg from', lightning_reg.__file__); from benchmarks.callback_overhead import main; main()")
  done
done > /tmp/ab/co.log 2>&1
echo done >> /tmp/ab/co.log
