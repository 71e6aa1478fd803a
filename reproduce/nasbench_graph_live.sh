#!/usr/bin/env bash
# Live training on Cora vs the NAS-Bench-Graph table: rank correlation and mean absolute difference
# of test accuracy over architectures spread across the table's range.
#
#   bash reproduce/nasbench_graph_live.sh --preset smoke|cpu|paper [--out DIR]
#
# smoke: 3 architectures x 1 seed, 100 epochs (seconds; CI).
# cpu:   30 architectures x 2 seeds with the benchmark's own recipe (SGD, 400 epochs) -- about an hour
#        on 2 CPU cores.
# paper: 30 architectures x 3 seeds (the table averages 3 seeds).
set -euo pipefail
preset=cpu
out=results
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 --preset smoke|cpu|paper [--out DIR]" >&2; exit 2 ;;
  esac
done
case "$preset" in
  smoke) n=3; seeds=0 ;;
  cpu) n=30; seeds=0-1 ;;
  paper) n=30; seeds=0-2 ;;
  *) echo "unknown preset $preset: use smoke, cpu or paper" >&2; exit 2 ;;
esac
python -m nasrepro.tracking.table_agreement --task cora --table nasbench-graph/cora \
  --n "$n" --seeds "$seeds" --preset "$preset" --out "$out"
nasrepro leaderboard --results "$out"
