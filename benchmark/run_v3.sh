#!/usr/bin/env bash
# Benchmark v3 (issue #25): every method at its tuned settings (benchmark/results/tuning/v1/tuned.json where the task was tuned,
# the scripts' defaults, the best single tuned setting, on the controls), evaluation seeds 1-5 on every task.
# Each finished run is kept under benchmark/results/v3/{task}/ and skipped next time: rerun this script to go on
# where it stopped, here or on a fresh machine (benchmark/import_v3.sh first brings in the runs of issues #21, #22).
#     WORKERS=2 bash benchmark/run_v3.sh            # or BACKEND=ray
set -e
cd "$(dirname "$0")/.."
CF="--relabel counterfactual --critic-weight 20"
DAGGER="--dagger-rounds 4 --dagger-steps 10000 --dagger-updates 1000"
GRID=(--seeds 1 2 3 4 5 --bits 0 1 3 --channels differentiable reinforced --results-dir benchmark/results/v3
  --workers "${WORKERS:-2}" --backend "${BACKEND:-local}")
# where the goals are drawn at reset: CTEDD-k by eq. (2) and by counterfactual relabelling with the critic
python -m benchmark.run --tasks simple_speaker_listener simple_reference --tuned benchmark/results/tuning/v1/tuned.json "${GRID[@]}" \
  --arm "ctedd_distill_cf_critic_k0=ctedd_distill.py:--message-bits 0 $CF" \
  --arm "ctedd_distill_cf_critic_k1=ctedd_distill.py:--message-bits 1 $CF" \
  --arm "ctedd_distill_cf_critic_k3=ctedd_distill.py:--message-bits 3 $CF"
# spread-an1 has no goal to relabel: CTEDD-k by eq. (2) and with DAgger
python -m benchmark.run --tasks simple_spread-an1 --tuned benchmark/results/tuning/v1/tuned.json "${GRID[@]}" \
  --arm "ctedd_distill_dagger_k0=ctedd_distill.py:--message-bits 0 $DAGGER" \
  --arm "ctedd_distill_dagger_k3=ctedd_distill.py:--message-bits 3 $DAGGER"
# the fully observed controls, eq. (2) only; tag is still rising at 1M env steps: 2M, with a resumable
# checkpoint every 200k steps (a grid stopped mid-run goes on from there on this machine)
python -m benchmark.run --tasks simple_push-scripted simple_spread "${GRID[@]}"
python -m benchmark.run --tasks simple_tag-scripted --budget 2000000 --checkpoint-frequency 200000 "${GRID[@]}"
