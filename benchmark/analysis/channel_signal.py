"""What the reinforced channel teaches its sender: MADDPG-k's critic, asked about the bits alone.

With `maddpg.py --channel reinforced` the bits are part of the sender's action and its Part 1 ascends its own Q_i
with the other agents' actions as the buffer holds them. Those actions were taken after hearing the stored bits, in
the same step, so with them given the bits change neither the reward nor the next state: an exact critic would be
flat in the sender's bits, and what the sender learns comes from how the critic generalises over inputs that move
together. This tool measures it on trained runs. For each visited state (episodes of the trained policies with their
training exploration) and each sender i, it evaluates Q_i(s, a) for every one of the 2^k bit patterns i could send:
  - receivers fixed: the others' actions held at what they did (what the actor update differentiates);
  - receivers responding: each receiver's force recomputed as its response to the pattern (the message's effect);
and reports the mean range of Q_i over the patterns both ways and how often the two agree on the best pattern.

    python -m benchmark.analysis.channel_signal --results-dir benchmark/results/v4 --runs-dir runs \
        --write benchmark/results/v4/channel_signal.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys

import torch

from benchmark.analysis.messages import TASKS, senders_of_results
from common.engine import make_envs
from common.envs import EPISODE_LENGTH
from common.runs import saved_args
from common.utils import atomic_write, load_checkpoint
from maddpg import ACTION_DIM, Args, Critics, LocalPolicies, perturbed_messages

SEED = 10_000


def bit_patterns(k: int) -> torch.Tensor:
    """Every message of k bits in {-1, +1}: (2^k, k)."""
    return torch.tensor(list(itertools.product([-1.0, 1.0], repeat=k)))


def senders(task: str, num_agents: int) -> list[int]:
    """The agents whose bits carry a goal: speaker-listener's speaker; on reference both."""
    return [0] if task == "simple_speaker_listener" else list(range(num_agents))


def q_over_patterns(policy: LocalPolicies, critics: Critics, obs, state, actions, sender: int):
    """Q_sender for every bit pattern the sender could send, (2^k, B) twice: with the others' actions as taken
    (receivers fixed) and with the others' forces recomputed from the bits they would hear (receivers responding).
    obs (N, B, W), state (B, S), actions (N, B, 2 + k): forces then bits, as the reinforced channel stores them."""
    others = [j for j in range(policy.num_agents) if j != sender]
    fixed, responding = [], []
    for pattern in bit_patterns(policy.message_bits):
        sent = actions.clone()
        sent[sender, :, ACTION_DIM:] = pattern
        fixed.append(critics(state, sent)[sender])
        heard = sent[..., ACTION_DIM:]
        answered = sent.clone()
        answered[others, :, :ACTION_DIM] = torch.tanh(policy.preactivation(obs, heard))[others]
        responding.append(critics(state, answered)[sender])
    return torch.stack(fixed), torch.stack(responding)


def signal(path: str, episodes: int) -> dict:
    """The critic's view of one run's bits over `episodes` episodes of its policies with training exploration."""
    checkpoint = load_checkpoint(path)
    args = saved_args(checkpoint, Args)
    envs = make_envs(vars(args), episodes)
    policy = LocalPolicies(envs.num_agents, envs.obs_width, args.hidden_dim, args.message_bits, args.message_type)
    policy.load_state_dict(checkpoint["policy"])
    critic_width = args.critic_hidden_dim or args.hidden_dim
    critics = Critics(envs.num_agents, envs.state_dim, ACTION_DIM + args.message_bits, critic_width, args.twin_critics)
    critics.load_state_dict(checkpoint["critics"])
    generator = torch.manual_seed(SEED)
    obs, state = envs.reset(seed=[SEED + i for i in range(episodes)])
    ranges_fixed, ranges_responding, agree = [], [], []
    with torch.no_grad():
        for _ in range(EPISODE_LENGTH):
            obs_t, state_t = torch.from_numpy(obs).transpose(0, 1), torch.from_numpy(state)
            bits = perturbed_messages(policy, obs_t, args.exploration_noise)
            forces = torch.tanh(policy.preactivation(obs_t, bits))
            noise = torch.randn(forces.shape, generator=generator) * args.exploration_noise
            actions = torch.cat([(forces + noise).clamp(-1.0, 1.0), bits], dim=-1)
            for sender in senders(args.env_id, envs.num_agents):
                fixed, responding = q_over_patterns(policy, critics, obs_t, state_t, actions, sender)
                ranges_fixed.append(fixed.max(0).values - fixed.min(0).values)
                ranges_responding.append(responding.max(0).values - responding.min(0).values)
                agree.append((fixed.argmax(0) == responding.argmax(0)).float())
            obs, state, *_ = envs.step(actions[..., :ACTION_DIM].transpose(0, 1).numpy())
    return {
        "q_range_receivers_fixed": torch.cat(ranges_fixed).mean().item(),
        "q_range_receivers_responding": torch.cat(ranges_responding).mean().item(),
        "same_best_pattern": torch.cat(agree).mean().item(),
        "patterns": 2**args.message_bits,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", required=True, help="a results tree whose reinforced-channel runs to read")
    parser.add_argument("--runs-dir", nargs="+", default=["runs"], help="where those runs' models are")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per run")
    parser.add_argument("--write", help="a JSON file for the numbers (written atomically)")
    cli = parser.parse_args(argv)
    if not os.path.isdir(cli.results_dir):
        sys.exit(f"error: results directory {cli.results_dir} does not exist")
    report = {}
    for task, methods in senders_of_results(cli.results_dir, cli.runs_dir).items():
        for label, (_, models, _) in methods.items():
            if "reinf." in label and models:
                report.setdefault(task, {})[label] = {seed: signal(path, cli.episodes) for seed, path in models.items()}
    if not report:
        sys.exit(f"error: no run of a reinforced-channel result of {cli.results_dir} under {', '.join(cli.runs_dir)}")
    print("| task | sender | seed | Q range, receivers fixed | Q range, receivers responding | same best pattern |")
    print("|---|---|---|---|---|---|")
    for task in TASKS:
        for label, seeds in report.get(task, {}).items():
            for seed, row in sorted(seeds.items()):
                print(
                    f"| {task} | {label} | {seed} | {row['q_range_receivers_fixed']:.3f} | "
                    f"{row['q_range_receivers_responding']:.3f} | {row['same_best_pattern']:.0%} "
                    f"(chance {1 / row['patterns']:.0%}) |"
                )
    if cli.write:
        atomic_write(cli.write, lambda f: f.write((json.dumps(report, indent=1) + "\n").encode()))
    return report


if __name__ == "__main__":
    main()
