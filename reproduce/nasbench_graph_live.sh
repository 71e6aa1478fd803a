#!/usr/bin/env bash
# Live training vs the NAS-Bench-Graph table (issue 16 item 2): rank and absolute agreement of test
# accuracy, with bootstrap intervals and the noise ceiling, over architectures stratified by the table's
# validation accuracy, each trained under the benchmark's own protocol (raw features, its optimiser,
# the epoch of lowest validation loss, the mean over 3 seeds).
#
#   bash reproduce/nasbench_graph_live.sh --preset smoke|cpu|paper [--out DIR]
#
# smoke: 4 architectures on Cora, 2 epochs, one seed (seconds; CI).
# cpu:   60 architectures x 3 seeds on Cora and on CiteSeer, the benchmark's 400 epochs: about 80 s per
#        architecture on 2 idle cores, so 1.5 hours per dataset (resumable: finished records are kept).
# paper: the same as cpu (the benchmark's protocol is CPU-cheap).
set -euo pipefail
source "$(dirname "$0")/lib/args.bash"
case "$preset" in
  smoke) n=4; datasets="cora"; study_preset=smoke ;;
  cpu|paper) n=60; datasets="cora citeseer"; study_preset=cpu ;;
esac
for dataset in $datasets; do
  python -m nasrepro.app.studies.table_agreement --task "$dataset" --table "nasbench-graph/$dataset" \
    --n "$n" --preset "$study_preset" --out "$out"
done
nasrepro leaderboard --results "$out"
