"""Why MADDPG-k learns to talk on some seeds and not on others: the channel over training.

Runs maddpg.py's own `main` on simple_speaker_listener, at Benchmark v2's settings but for the actors'
learning rate, and every `--every` learning iterations looks at the replay batch just sampled:

- `saturated`: the share of the speaker's Part 1 logits with |tanh(logit)| > 0.99, where the
  straight-through gradient 1 - tanh^2 is below 0.02: a bit that can no longer be moved;
- `mean_abs_tanh`: mean |tanh(logit)| of the speaker's logits;
- `info_bits`: I(goal; message) on the batch in bits (the goal is the speaker's whole observation,
  its colour), at most log2 3 = 1.58; `message_entropy`: H(message) in bits;
- `listener_use`: how far the listener's force moves when every bit it hears is flipped, mean L2;
- `speaker_grad` and `listener_grad`: the norm of the actor loss's gradient reaching the speaker's
  Part 1 and the listener's Part 2 before clipping (`clip_grad_norm_` over all the actor's parameters);
- `alive_first`, `alive_second`: the share of the speaker's hidden ReLU units (first, second layer of
  Part 1) active for some goal of the batch; `varying_second`: those whose output depends on the goal.
  When no unit of the second layer is alive, the message is the last layer's bias for every goal and
  no gradient reaches the layers below: the channel is dead for good (docs/tuning.md).

The script is not changed: the probe wraps `make_policy` (to find the policy), `ReplayBuffer.sample`
(the batch) and `clip_grad_norm_` (the gradients), and restores them afterwards. Writes one JSON per
run under benchmark/results/channel/ and, with --figure, the four signals over training per run.

    python -m benchmark.analysis.channel_probe --seeds 1 2 3 --learning-rate 1e-2 --total-timesteps 500000
    python -m benchmark.analysis.channel_probe --figure docs/channel_probe.png     # the figure from the kept runs
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch

import maddpg
from benchmark.report import save  # one way to write a figure, the report's
from common.buffer import ReplayBuffer
from common.utils import atomic_write

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmark" / "results" / "channel"
# Benchmark v2's settings, the scripts' defaults before the tuning, but the actors' learning rate (--learning-rate)
V2_SETTINGS = ["--critic-learning-rate", "0.01", "--tau", "0.01", "--train-frequency", "100", "--batch-size", "1024"]
V2_SETTINGS += ["--actor-reg", "0.001", "--exploration-noise", "1.0"]


def plug_in_information(goals: list, messages: list) -> tuple[float, float]:
    """I(goal; message) and H(message), in bits, from paired samples."""
    n = len(goals)

    def entropy(counts) -> float:
        p = np.array(list(counts.values()), dtype=float) / n
        return float(-(p * np.log2(p)).sum())

    h_goal, h_message = entropy(Counter(goals)), entropy(Counter(messages))
    return h_goal + h_message - entropy(Counter(zip(goals, messages))), h_message


def channel_stats(policy, obs: torch.Tensor) -> dict:
    """The speaker's (agent 0) bits and the listener's (agent 1) use of them on a batch of observations (N, B, W)."""
    with torch.no_grad():
        first = policy.message_net[1](policy.message_net[0](obs))
        second = policy.message_net[3](policy.message_net[2](first))
        logits = policy.message_net(obs)[0]
        squashed = torch.tanh(logits).abs()
        messages = policy.messages(obs)
        goals = [tuple(row) for row in obs[0].numpy().round(3).tolist()]
        bits = [tuple(row) for row in messages[0].numpy().tolist()]
        info, h_message = plug_in_information(goals, bits)
        heard = torch.tanh(policy.preactivation(obs, messages))[1]
        flipped = torch.tanh(policy.preactivation(obs, -messages))[1]
    return {
        "saturated": float((squashed > 0.99).float().mean()),
        "mean_abs_tanh": float(squashed.mean()),
        "info_bits": info,
        "message_entropy": h_message,
        "listener_use": float((heard - flipped).norm(dim=-1).mean()),
        # the speaker's hidden ReLU units active (> 0) for some goal of the batch, per layer
        "alive_first": float((first[0] > 0).any(0).float().mean()),
        "alive_second": float((second[0] > 0).any(0).float().mean()),
        # the hidden units whose output differs between goals: what can make the bits depend on the goal
        "varying_second": float((second[0].max(0).values - second[0].min(0).values > 1e-6).float().mean()),
    }


def probe(argv: list[str], every: int) -> dict:
    """One run of maddpg.main with the channel recorded every `every` learning iterations."""
    policies, batch, records = [], {}, []
    originals = (maddpg.make_policy, ReplayBuffer.sample, torch.nn.utils.clip_grad_norm_)
    make_policy, sample, clip = originals
    iterations = [0]

    def recording_make_policy(*args, **kwargs):
        policies.append(make_policy(*args, **kwargs))
        return policies[-1]

    def recording_sample(self, *args, **kwargs):
        batch["data"] = sample(self, *args, **kwargs)
        return batch["data"]

    def recording_clip(parameters, *args, **kwargs):
        parameters = list(parameters)
        policy = policies[0]
        if parameters and parameters[0] is next(policy.parameters()):  # the actor's clip, after its backward
            iterations[0] += 1
            if iterations[0] % every == 0:
                # row 0 of every AgentLinear is the speaker's, row 1 the listener's
                speaker = torch.cat([p.grad[0].flatten() for p in policy.message_net.parameters()]).norm()
                listener = torch.cat([p.grad[1].flatten() for p in policy.action_net.parameters()]).norm()
                record = {"iteration": iterations[0], "speaker_grad": float(speaker), "listener_grad": float(listener)}
                record.update(channel_stats(policy, batch["data"].obs))
                records.append(record)
        return clip(parameters, *args, **kwargs)

    maddpg.make_policy, ReplayBuffer.sample = recording_make_policy, recording_sample
    torch.nn.utils.clip_grad_norm_ = recording_clip
    cwd = os.getcwd()
    try:
        args = maddpg.tyro.cli(maddpg.Args, args=argv)
        os.chdir(tempfile.mkdtemp(prefix="channel_probe_"))
        with contextlib.redirect_stdout(sys.stderr):
            final = maddpg.main(args)
        curve = json.loads(Path(glob.glob("runs/*/result.json")[0]).read_text())["curve"]
    finally:
        maddpg.make_policy, ReplayBuffer.sample, torch.nn.utils.clip_grad_norm_ = originals
        os.chdir(cwd)
    for record in records:  # the env step of each record
        record["step"] = args.learning_starts + record["iteration"] * args.train_frequency
    return {"args": argv, "final": final["sum"], "curve": curve, "records": records}


def figure(paths: list[str], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    signals = [("return", "evaluation return"), ("info_bits", "I(goal; message), bits")]
    signals += [
        ("alive_second", "speaker's 2nd hidden layer: units alive"),
        ("saturated", "speaker's logits saturated"),
    ]
    fig, axes = plt.subplots(1, len(signals), figsize=(4.2 * len(signals), 3.4))
    for path in sorted(paths):
        run = json.loads(Path(path).read_text())
        label = Path(path).stem.replace("__", " seed ")
        style = "-" if "lr0.01" in label else "--"
        for ax, (key, title) in zip(axes, signals):
            ax.grid(alpha=0.3)
            if key == "return":
                x, y = zip(*run["curve"])
            else:
                x, y = [r["step"] for r in run["records"]], [r[key] for r in run["records"]]
            ax.plot(np.array(x) / 1e3, y, style, label=label, linewidth=1.2)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("env steps (thousands)")
    axes[0].legend(fontsize=7)
    fig.suptitle("MADDPG-3 (differentiable channel) on speaker-listener: solid lr 1e-2, dashed lr 1e-3", fontsize=10)
    fig.tight_layout()
    save(fig, out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="*", type=int, default=[])
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--total-timesteps", type=int, default=500_000)
    parser.add_argument("--every", type=int, default=50, help="learning iterations between records")
    parser.add_argument("--extra", default="", help="more maddpg.py arguments")
    parser.add_argument("--figure", default=None, help="draw the kept runs into this PNG")
    parser.add_argument("--results-dir", default=str(RESULTS))
    cli = parser.parse_args()
    if cli.every <= 0 or cli.total_timesteps <= 0:
        raise SystemExit("error: --every and --total-timesteps must be positive")
    for seed in cli.seeds:
        argv = ["--env-id", "simple_speaker_listener", "--message-bits", "3", "--seed", str(seed), *V2_SETTINGS]
        argv += ["--learning-rate", str(cli.learning_rate), "--total-timesteps", str(cli.total_timesteps)]
        argv += cli.extra.split()
        result = probe(argv, cli.every)
        path = Path(cli.results_dir) / f"lr{cli.learning_rate:g}__{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(str(path), lambda f, result=result: f.write(json.dumps(result).encode()))
        last = result["records"][-1]
        print(f"seed {seed}: final {result['final']:.2f}, I(goal; message) {last['info_bits']:.2f} bits -> {path}")
    if cli.figure:
        figure(glob.glob(str(Path(cli.results_dir) / "*.json")), cli.figure)
