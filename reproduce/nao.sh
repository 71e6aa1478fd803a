#!/usr/bin/env bash
# NAO (Luo et al., "Neural Architecture Optimization", NeurIPS 2018) on the NAS-Bench-201 tables, and
# NAO-WS (its weight-sharing variant) on CIFAR-10 and PTB.
#
#   bash reproduce/nao.sh --preset smoke|cpu|paper [--out DIR]
#
# NAO's seed pool, EPD rounds and gradient-ascent generation over the NB201 cell, reward = validation
# accuracy, next to random search and regularized evolution at the same unique-query budgets.
#
# NAO-WS (nasrepro/methods/nao/README.md, "NAO-WS"): supernet search over the 5-op NAO cell with
# controller rounds, the top of the final pool re-ranked by short training, the winner trained from
# scratch (one query: --budget 1) under the space's NAO_V1 optimiser; beside it, random search on the
# same cell space with the same single final training.
#   smoke: supernet N=1 F=8, 2 epochs of 2 batches; final network nao-cells-n1f8; 1 seed (seconds).
#   cpu:   supernet N=1 F=16, 20 epochs on 2,560 images, 3 controller rounds; final network
#          nao-cells-n1f8 (N=1, F=8) under the cpu recipe (10 epochs on 10,000 images); seeds 0-2,
#          with random search at the same budget. ~1 h per seed estimated from single-step timings
#          on 2 loaded cores (not run here).
#   paper: NAO_V1's search (N=3 F=20, 150 epochs, 600 seeds, 4 rounds, top 5 re-ranked for 10 epochs),
#          then NAONet-size training of the winner (nao-cells: N=6, F=36; 600 epochs, batch 128,
#          dropout 0.4, Cutout 16). GPU; not run here. Auxiliary head and drop-path are not applied.
#
# NAO-WS on PTB (README, "NAO-WS on PTB"): supernet search over NAO's 11-node recurrent cell with
# controller rounds, the winner's language model trained from scratch (--budget 1); beside it, random
# search on the same cell space with the same single final training.
#   smoke: supernet with 16 hidden units, 2 epochs of 3 windows; final LM nao-rnn-cells-h32 (seconds).
#   cpu:   supernet with 64 hidden units, 12 epochs of 100 windows of 35 x 64 tokens, 3 controller
#          rounds, top 3 re-ranked after 1 epoch; final LM nao-rnn-cells-h32 under the ptb cpu recipe
#          (4 epochs of 200 windows) with the NAO/DARTS optimiser (SGD lr 20, clip 0.25); seeds 0-2.
#          ~21 min per seed measured (seed 0 on 2 loaded cores), random search ~2 min per seed.
#   paper: NAO-WS/rnn's search (nhid 300, 1000 epochs scored every 200, 1000 seeds, 300 new + 50
#          random per round), then the 850-unit LM of the winner for 4000 epochs (batch 64, bptt 35);
#          GPU; not run here. The final training uses the code's schedule (ptb lm_schedule: darts:
#          switch to averaged SGD after 5 non-improving validations, TAR 1e-3, variable bptt,
#          scored at the least validation loss); smoke and cpu keep the task's plain schedule.
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

case "$preset" in
  smoke) ws_space=nao-cells-n1f8; rnn_space=nao-rnn-cells-h32; ws_seeds="0"; ws_baselines="" ;;
  cpu) ws_space=nao-cells-n1f8; rnn_space=nao-rnn-cells-h32; ws_seeds="0-2"; ws_baselines="random" ;;
  paper) ws_space=nao-cells; rnn_space=nao-rnn-cells; ws_seeds="0"; ws_baselines="" ;;
esac
for method in nao-ws $ws_baselines; do
  nasrepro search --method "$method" --task cifar10 --space "$ws_space" --seeds "$ws_seeds" --budget 1 \
    --preset "$preset" --out "$out" --wandb disabled
  nasrepro search --method "$method" --task ptb --space "$rnn_space" --seeds "$ws_seeds" --budget 1 \
    --preset "$preset" --out "$out" --wandb disabled
done
nasrepro leaderboard --results "$out"
