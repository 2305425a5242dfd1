#!/usr/bin/env bash
# Benchmark v4 (issue #36): every method at the setting tuning protocol v2 chose for it on each task
# (benchmark/tuned.json, written by python -m benchmark.tune --write-tuned; docs/tuning.md), evaluation seeds 1-5 on
# every task, 1M env steps (tag 2M). CTEDD-k by eq. (2) (ctedd_distill.py's defaults, the student as wide as tuned)
# and, where a channel matters, by the tuned distillation that hedges: counterfactual relabelling with the critic
# where goals are drawn at reset, DAgger on spread-an1 (their flags come from tuned.json under the arms' names).
# Each finished run is kept under benchmark/results/v4/{task}/ and skipped next time: rerun this script to go on
# where it stopped, here or on a fresh machine; training runs write a resumable checkpoint every 200k env steps.
#     WORKERS=2 bash benchmark/run_v4.sh            # or BACKEND=ray; WORKERS=0 prints the commands only
# The runs' models stay on the machine (runs/): before leaving one mid-grid, keep what the bits say so far with
#     python -m benchmark.analysis.messages --results-dir benchmark/results/v4 --write benchmark/results/v4/messages.json
set -e
cd "$(dirname "$0")/.."
GRID=(--seeds 1 2 3 4 5 --bits 0 1 3 --channels differentiable reinforced --tuned "${TUNED:-benchmark/tuned.json}"
  --results-dir "${RESULTS_DIR:-benchmark/results/v4}" --checkpoint-frequency 200000
  --workers "${WORKERS:-2}" --backend "${BACKEND:-local}")
RELABEL=() DAGGER=()
for k in 0 1 3; do
  RELABEL+=(--arm "ctedd_distill_cf_critic_k$k=ctedd_distill.py:--message-bits $k")
  DAGGER+=(--arm "ctedd_distill_dagger_k$k=ctedd_distill.py:--message-bits $k")
done
python -m benchmark.run --tasks simple_speaker_listener simple_reference "${GRID[@]}" "${RELABEL[@]}"
if [ "${WORKERS:-2}" != 0 ]; then  # what the bits say, while the runs' models are here (kept entries stay)
  python -m benchmark.analysis.messages --results-dir "${RESULTS_DIR:-benchmark/results/v4}" --runs-dir runs \
    --write "${RESULTS_DIR:-benchmark/results/v4}/messages.json"
fi
python -m benchmark.run --tasks simple_spread-an1 "${GRID[@]}" "${DAGGER[@]}"
python -m benchmark.run --tasks simple_push-scripted simple_spread "${GRID[@]}"
python -m benchmark.run --tasks simple_tag-scripted --budget 2000000 "${GRID[@]}"
