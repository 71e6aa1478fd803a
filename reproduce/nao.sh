#!/usr/bin/env bash
# NAO (Luo et al., "Neural Architecture Optimization", NeurIPS 2018) on the NAS-Bench-201 tables.
#
#   bash reproduce/nao.sh --preset smoke|cpu|paper [--out DIR]
#
# NAO's seed pool, EPD rounds and gradient-ascent generation over the NB201 cell, reward = validation
# accuracy, next to random search and regularized evolution at the same unique-query budgets.
#
# smoke: seconds (what CI runs): nasbench201/cifar10, budget 20, 1 seed, a tiny EPD.
# cpu:   the three NB201 tables x budgets 100 and 500 x 20 seeds, NAO's defaults (the committed
#        records; b100 takes ~10 s of CPU per seed, b500 a few minutes), then the baselines on the
#        same tables and the leaderboard.
# paper: as cpu, with the paper's controller scale where a table budget allows it: EPD trained
#        1000 epochs per round and 100 generation seeds (README, "Deviations").
set -euo pipefail
source "$(dirname "$0")/lib/args.bash"
tables="nasbench201/cifar10 nasbench201/cifar100 nasbench201/imagenet16-120"

case "$preset" in
  smoke)
    tables="nasbench201/cifar10"; budgets="20"; seeds="0"; baselines=""
    config='{seed_archs: 6, top_k: 6, new_archs: 7, epochs: 5, hidden_size: 32, mlp_hidden_size: 32}' ;;
  cpu) budgets="100 500"; seeds="0-19"; baselines="random evolution"; config='{}' ;;
  paper) budgets="100 500"; seeds="0-19"; baselines="random evolution"; config='{epochs: 1000, top_k: 100}' ;;
esac
# Table tasks' preset names only the default budget: records are filed under cpu for cpu and paper.
table_preset=$([ "$preset" = smoke ] && echo smoke || echo cpu)
tag=$([ "$preset" = paper ] && echo paper-epd || echo "")

for task in $tables; do
  for budget in $budgets; do
    nasrepro search --method nao --task "$task" --seeds "$seeds" --budget "$budget" --preset "$table_preset" \
      --method-config "$config" ${tag:+--tag "$tag"} --out "$out" --wandb disabled
    for method in $baselines; do
      nasrepro search --method "$method" --task "$task" --seeds "$seeds" --budget "$budget" \
        --preset "$table_preset" --out "$out" --wandb disabled
    done
  done
done
nasrepro leaderboard --results "$out"
