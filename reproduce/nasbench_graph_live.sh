#!/usr/bin/env bash
# Live training vs the NAS-Bench-Graph table (issue 16 item 2): rank and absolute agreement of test
# accuracy, with bootstrap intervals and the noise ceiling, over architectures stratified by the table's
# validation accuracy, each trained under the benchmark's own protocol (raw features, its optimiser,
# the epoch of lowest validation loss, the mean over 3 seeds).
#
#   bash reproduce/nasbench_graph_live.sh --preset smoke|cpu|paper [--out DIR]
#
# smoke: 4 architectures on Cora, 2 epochs, one seed (seconds; CI).
# cpu:   60 architectures x 3 seeds on Cora and on CiteSeer, the benchmark's 400 epochs at width 256 on
#        the raw 1,433-dim features: measured about 0.5 s per epoch (train step + validation pass) on
#        one core, so about 10 CPU-minutes per architecture that does not diverge and 5-10 CPU-hours
#        per dataset; two processes share each sample (resumable: finished records are kept; each
#        shard's log is in the output folder).
# paper: the same as cpu (the benchmark's protocol is CPU-cheap).
set -euo pipefail
source "$(dirname "$0")/lib/args.bash"
case "$preset" in
  smoke) n=4; datasets="cora"; study_preset=smoke ;;
  cpu|paper) n=60; datasets="cora citeseer"; study_preset=cpu ;;
esac
# cpu/paper: two processes share each sample (one per core; each trains every second architecture)
shards=$([ "$preset" = smoke ] && echo 1 || echo 2)
mkdir -p "$out"
for dataset in $datasets; do
  study=(nasrepro study table-agreement --task "$dataset" --table "nasbench-graph/$dataset"
         --n "$n" --preset "$study_preset" --out "$out")
  if [ "$shards" = 1 ]; then "${study[@]}"; continue; fi
  pids=()
  for ((k = 0; k < shards; k++)); do
    OMP_NUM_THREADS=1 "${study[@]}" --shard "$k/$shards" > "$out/agreement_${dataset}_shard$k.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  "${study[@]}" --summarise-only
done
nasrepro leaderboard --results "$out"
