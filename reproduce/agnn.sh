#!/usr/bin/env bash
# AGNN (Auto-GNN, Zhou et al. 2019): every experiment of the paper the suite covers.
#
#   bash reproduce/agnn.sh --preset smoke|cpu|paper [--out DIR]
#
# Table runs: AGNN's controller and its GraphNAS-RL ablation over the NAS-Bench-Graph space, reward =
#   validation accuracy, 20 seeds, the baselines' budgets (100 and 500 unique queries).
# Live runs: the GraphNAS macro space on Cora (and Citeseer in paper), children trained by the harness:
#   agnn without and with constrained parameter sharing, graphnas-rl, random search and regularized
#   evolution at equal budgets (the paper's own ablation); the best architecture AGNN found is then
#   retrained over 10 seeds next to GCN and GAT trained by the same harness.
#
# smoke: seconds-to-minutes, what CI runs (tiny budgets, one seed).
# cpu:   table runs on all nine NAS-Bench-Graph datasets (as the baselines' records); live
#        runs on Cora and Citeseer, 12 children per search, seed 0, GraphNAS's 300-epoch children.
#        CPU scale (the paper explores ~1,000 architectures per search). Measured on 2 cores: an AGNN
#        search takes 5-8 min (its children stay near the small incumbent), with sharing 5 min; random
#        search and evolution sample the whole space, whose widest children (16 heads x 256 units) take
#        up to 10 min each, so those two rows take hours -- resumable with --resume.
# paper: the cpu table runs; live runs on cora, citeseer and pubmed with
#        the paper preset's budget and GraphNAS's 300-epoch children (GPU hours).
set -euo pipefail
source "$(dirname "$0")/lib/args.bash"
all_tables="nasbench-graph/cora nasbench-graph/citeseer nasbench-graph/pubmed nasbench-graph/cs"
all_tables="$all_tables nasbench-graph/physics nasbench-graph/photo nasbench-graph/computers"
all_tables="$all_tables nasbench-graph/arxiv nasbench-graph/proteins"

case "$preset" in
  smoke)
    tables="nasbench-graph/cora"; budgets="20"; seeds="0-1"; live="cora"; live_budget=3; live_seeds="0"
    # AGNN's children stay near a small incumbent; random/evolution children may be the space's widest
    # (minutes each even at 100 epochs), so the smoke run exercises the AGNN rows only
    live_methods="agnn agnn-share"; retrain_seeds="0-1"; export NASREPRO_WORKERS=1 ;;
  cpu)
    tables="$all_tables"; budgets="100 500"; seeds="0-19"
    live="cora citeseer"; live_budget=12; live_seeds="0"; retrain_seeds="0-9" ;;
  paper)
    tables="$all_tables"; budgets="100 500"; seeds="0-19"; live="cora citeseer pubmed"; live_budget=""; live_seeds="0-4"
    retrain_seeds="0-9" ;;
esac
live_methods=${live_methods:-"agnn agnn-share graphnas-rl random evolution"}
# Regularized evolution's default population (20) exceeds the cpu budget of 12 children, which would
# make it random search; at that budget it keeps half the budget for the initial population.
evolution_config=$([ "$preset" = paper ] && echo '{}' || echo '{population: 6, sample_size: 3}')
table_preset=$([ "$preset" = smoke ] && echo smoke || echo cpu)
budget_flag() { [ -n "$1" ] && echo "--budget $1" || true; }

# 1. Table runs (seconds per seed): AGNN vs its ablation; baselines come from reproduce/baselines.sh.
for task in $tables; do
  for budget in $budgets; do
    for method in agnn graphnas-rl; do
      nasrepro search --method "$method" --task "$task" --seeds "$seeds" --budget "$budget" \
        --preset "$table_preset" --out "$out" --wandb disabled
    done
  done
done

# 2. Live searches over the GraphNAS macro space, all at the same budget of trained children.
for task in $live; do
  common=(--task "$task" --space graphnas --seeds "$live_seeds" --preset "$preset" --out "$out" --wandb disabled)
  for row in $live_methods; do
    case "$row" in
      agnn-share) args=(--method agnn --tag graphnas-share --method-config '{share: true}') ;;
      evolution) args=(--method evolution --tag graphnas --method-config "$evolution_config") ;;
      *) args=(--method "$row" --tag graphnas) ;;
    esac
    # shellcheck disable=SC2046
    nasrepro search "${args[@]}" "${common[@]}" $(budget_flag "$live_budget")
  done

  # 3. Retrain the architecture AGNN (without sharing, first seed) selected on validation accuracy.
  best=$(python - "$out" "$task" "$preset" <<'PY'
import json, pathlib, sys
out, task, preset = sys.argv[1:]
paths = sorted(pathlib.Path(out, "runs", task, "agnn").glob(f"{preset}-*-graphnas-s[0-9]*.json"))
if not paths:
    sys.exit(f"no AGNN graphnas record for {task} under {out}")
print(json.loads(paths[0].read_text())["best_arch"])
PY
)
  nasrepro evaluate --task "$task" --space graphnas --arch "$best" --tag agnn-best --seeds "$retrain_seeds" \
    --preset "$preset" --out "$out" --wandb disabled
  for reference in gcn gat; do
    nasrepro evaluate --task "$task" --arch "$reference" --seeds "$retrain_seeds" --preset "$preset" \
      --out "$out" --wandb disabled
  done
done
nasrepro leaderboard --results "$out"
