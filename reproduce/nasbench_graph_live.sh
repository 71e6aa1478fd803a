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
source "$(dirname "$0")/lib/args.bash"
case "$preset" in
  smoke) n=3; seeds=0 ;;
  cpu) n=30; seeds=0-1 ;;
  paper) n=30; seeds=0-2 ;;
esac
python -m nasrepro.app.studies.table_agreement --task cora --table nasbench-graph/cora \
  --n "$n" --seeds "$seeds" --preset "$preset" --out "$out"
nasrepro leaderboard --results "$out"
