#!/usr/bin/env bash
# ProxylessNAS (Cai, Zhu & Han, ICLR 2019): the rows of the paper's tables the suite covers.
#
#   bash reproduce/proxylessnas.sh --preset smoke|cpu|paper [--out DIR] [--dry-run]
#
# --dry-run prints every command (and, at paper, every paper row's full configuration) without running.
#
# Rows (see nasrepro/methods/proxylessnas/README.md):
#   - NAS-Bench-201 as a one-shot method: the supernet trains on real CIFAR-10, the derived cell's
#     200-epoch accuracy is read from the table, next to random search and regularized evolution
#     (reproduce/baselines.sh) on the same table. Not a paper row: a search-quality check.
#   - CIFAR-10 (paper Table 1, Proxyless-G): gradient search over the MBConv space at 32x32
#     (`proxyless-cifar`; the released tree-cell space had no search code), then the derived network
#     trained from scratch by the harness.
#   - ImageNet (paper Table 2/3): gradient search over the paper's MBConv space (`proxyless-imagenet`).
#   Both code columns are run where the budget allows: "code" (full_v2 gates, mul#log regulariser: the
#   released default) and "paper" (two-path gates, additive regulariser).
#
# smoke: seconds per search (CI). cpu: NAS-Bench-201 3 seeds, CIFAR-10 3 seeds, CPU-scale supernets
# (2 warm-up + 6-8 joint epochs on a few thousand images; ~1 h on 2 cores) -- labelled cpu, never
# the paper setting. paper: the released recipe (40 + 120 epochs, batch 256; ~200 GPU-hours on ImageNet).
set -euo pipefail
# --dry-run is this script's own flag; the shared parser sees the rest.
dry_run=0
args=()
for arg in "$@"; do
  if [ "$arg" = "--dry-run" ]; then dry_run=1; else args+=("$arg"); fi
done
set -- ${args[@]+"${args[@]}"}
source "$(dirname "$0")/lib/args.bash"
run() {
  if [ "$dry_run" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi
}

case "$preset" in
  smoke) nb201_seeds="0"; cifar_seeds="0"; imagenet_seeds="0"; export NASREPRO_WORKERS=1 ;;
  cpu) nb201_seeds="0-2"; cifar_seeds="0-2"; imagenet_seeds="" ;;
  paper) nb201_seeds="0-4"; cifar_seeds=""; imagenet_seeds="" ;;  # CIFAR/ImageNet: the paper rows below
esac
common=(--method proxylessnas --budget 1 --preset "$preset" --out "$out" --wandb disabled)

# One-shot on NAS-Bench-201: both columns (a search costs minutes on the CPU at the cpu preset).
run nasrepro search "${common[@]}" --task nasbench201/cifar10 --seeds "$nb201_seeds"
run nasrepro search "${common[@]}" --task nasbench201/cifar10 --seeds "$nb201_seeds" \
  --method-config '{column: paper}' --tag paper-column
# Accuracy only (no cost term): what random search and evolution optimise on the table, so the fair
# search-quality comparison; the cost-regularised columns trade accuracy for FLOPs by design.
run nasrepro search "${common[@]}" --task nasbench201/cifar10 --seeds "$nb201_seeds" \
  --method-config '{regularizer: none}' --tag no-cost

# Proxyless-R (Sec. 3.3.2): REINFORCE on the binarised supernet, reward acc * (ref / FLOPs)^0.1.
run nasrepro search "${common[@]}" --task nasbench201/cifar10 --seeds "$nb201_seeds" \
  --method-config '{algorithm: rl}' --tag reinforce

# CIFAR-10 over the 32x32 MBConv space (proxyless-cifar, the method's default there); the derived network
# is trained by the harness.
if [ -n "$cifar_seeds" ]; then
  run nasrepro search "${common[@]}" --task cifar10 --seeds "$cifar_seeds" --tag mbconv
fi

# ImageNet over the paper's space (proxyless-imagenet, the default) on the 100-image sample (smoke only).
if [ "$preset" = smoke ]; then
  run nasrepro search "${common[@]}" --task imagenet --seeds "$imagenet_seeds" --tag mbconv
fi
# The paper's rows as data (nasrepro/methods/proxylessnas/paper_rows.py): Table 1 CIFAR-10 Proxyless-G, Table 2
# Proxyless-G with and without the latency loss and Proxyless-R on the released mobile table (ref 80 ms),
# Table 3 GPU (CUDA table at batch 8); each with its hold-out and retraining recipe. Rows that need
# ImageNet's train split, a GPU or the released mobile table say so and are not run.
status=0
if [ "$preset" = paper ]; then
  if [ "$dry_run" = 1 ]; then
    python -m nasrepro.methods.proxylessnas.paper_rows --out "$out" --dry-run
  else
    python -m nasrepro.methods.proxylessnas.paper_rows --out "$out" || status=$?
  fi
fi
run nasrepro leaderboard --results "$out"
exit "$status"
