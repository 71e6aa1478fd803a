#!/usr/bin/env bash
# FaDE (Neumeyer, Stier & Granitzer, IDA 2024, arXiv 2404.16218): the experiments the suite covers.
#
#   bash reproduce/fade.sh --preset smoke|cpu|paper [--out DIR]
#
# Rows (see nasrepro/methods/fade/README.md):
#   - NAS-Bench-201 (CIFAR-10 table): FaDE regions trained live on CIFAR-10 images, every incumbent's
#     200-epoch accuracy read from the table; random search and regularized evolution at the same
#     number of evaluated architectures (the second claim: FaDE-guided search vs baselines).
#   - CIFAR-10 over the hierarchical multi-cell space (conv cells, L = 3 stages): FaDE, random search
#     and regularized evolution, every evaluated architecture trained from scratch by the harness.
#   - The rank-correlation study (the first claim): python -m nasrepro.methods.fade.correlation.
#
# smoke: seconds per search (CI): one seed, budgets of 2-3 architectures, one tiny correlation region.
# cpu:   NAS-Bench-201 20 seeds at budget 20 (each FaDE search trains up to 80 regions of k = 4 NB-201
#        cells at C = 8, N = 1: 10-30 min per seed on 2 cores); CIFAR-10 3 seeds at budget 10 (the cifar10
#        cpu recipe: 10 epochs on 10k images per evaluated architecture); CPU scale, never the paper setting.
# paper: NAS-Bench-201 20 seeds at budget 100 with the NB-201 search-net region (C = 16, N = 5);
#        CIFAR-10 3 seeds at the cifar10 paper recipe (GPU-days).
set -euo pipefail
source "$(dirname "$0")/lib/args.bash"

case "$preset" in
  smoke) nb_seeds="0"; nb_budget=3; c_seeds="0"; c_budget=2; corr="--preset smoke --regions 1 --seeds 0-1"
    export NASREPRO_WORKERS=1 ;;
  cpu) nb_seeds="0-19"; nb_budget=20; c_seeds="0-2"; c_budget=10; corr="--preset cpu --regions 3 --seeds 0-2" ;;
  paper) nb_seeds="0-19"; nb_budget=100; c_seeds="0-2"; c_budget=100; corr="--preset cpu --regions 10 --seeds 0-4" ;;
esac
common=(--preset "$preset" --out "$out" --wandb disabled)

# 1. NAS-Bench-201: FaDE and the baselines at an equal number of evaluated architectures.
nasrepro search --method fade --task nasbench201/cifar10 --seeds "$nb_seeds" --budget "$nb_budget" "${common[@]}"
if [ "$preset" != smoke ]; then
  for method in random evolution; do
    nasrepro search --method "$method" --task nasbench201/cifar10 --seeds "$nb_seeds" --budget "$nb_budget" \
      "${common[@]}"
  done
fi

# 2. CIFAR-10 over the hierarchical space (the method's default space there).
nasrepro search --method fade --task cifar10 --seeds "$c_seeds" --budget "$c_budget" --tag hierarchical "${common[@]}"
if [ "$preset" != smoke ]; then
  nasrepro search --method random --task cifar10 --space hierarchical --seeds "$c_seeds" --budget "$c_budget" \
    --tag hierarchical "${common[@]}"
  nasrepro search --method evolution --task cifar10 --space hierarchical --seeds "$c_seeds" --budget "$c_budget" \
    --method-config '{population: 4, sample_size: 2}' --tag hierarchical "${common[@]}"
fi

# 3. The rank-correlation study on NAS-Bench-201 (FaDE-ranks vs the table's accuracies).
# shellcheck disable=SC2086
python -m nasrepro.methods.fade.correlation $corr --out "$out/fade-correlation-$preset.json"
nasrepro leaderboard --results "$out"
