#!/usr/bin/env bash
# Benchmark v3 takes the 5-seed runs of issues #21 (tuned/) and #22 (hedge/): the same tuned settings, seeds
# and code behaviour (a rerun reproduces them bit for bit); the v3 grid adds what is missing.
set -e
cd "$(dirname "$0")/.."  # the repository root
V3=benchmark/results/v3
mkdir -p $V3 && cp benchmark/results/references.json $V3/
for task in simple_speaker_listener simple_reference simple_spread-an1; do
  mkdir -p $V3/$task
  for arm in ctedd_global ctedd_distill_k3 maddpg_k3_differentiable maddpg_k3_reinforced; do
    cp -n benchmark/results/tuned/$task/${arm}__*.json $V3/$task/ 2>/dev/null || true
  done
  relabelled="ctedd_distill_cf_critic_k0 ctedd_distill_cf_critic_k1 ctedd_distill_cf_critic_k3"
  if [ $task = simple_spread-an1 ]; then relabelled="ctedd_distill_dagger_k0 ctedd_distill_dagger_k3"; fi  # no goals: DAgger
  for arm in ctedd_distill_k0 ctedd_distill_k1 ctedd_distill_k3 $relabelled maddpg_k0 maddpg_k1_differentiable; do
    cp -n benchmark/results/hedge/$task/${arm}__*.json $V3/$task/ 2>/dev/null || true
  done
done
