"""What the bits say, on the communication tasks: the message each goal gets and I(goal; message).

For every saved local policy of the grid (CTEDD-k distilled, MADDPG-k), runs evaluation episodes
(on mpe2's seeds 10000, ...) and records, at every step, each sender's k bits next to the goal it
knows: the speaker's goal in simple_speaker_listener; in simple_reference, agent i's bits next to
the goal agent i sees (the landmark the *other* agent must reach). The plug-in mutual information
I(goal; message) in bits is at most log2 3 = 1.58 (3 goals) and at most k. Writes --write (default
benchmark/results/local/messages.json, beside your own runs, where python -m benchmark.report reads it) and,
with --paths, a figure of the listener's path for each goal.

With --results-dir, exactly the runs a results tree keeps (Benchmark v3's, say), every arm that sends
bits under its report label: each kept result is matched to the run directory, under any of the
--runs-dir folders, whose result.json is the same file. Each seed's entry records the kept result it
analysed (its sha256), and --write keeps the entries of the file it replaces whose kept result is
unchanged but whose run is no longer here: a grid that spans machines is analysed as it goes.

    python -m benchmark.analysis.messages --runs-dir runs --write benchmark/results/v2/messages.json \
        --paths docs/benchmark_listener_paths.png
    python -m benchmark.analysis.messages --results-dir benchmark/results/v3 --runs-dir runs ../exp/runs \
        --write benchmark/results/v3/messages.json
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from benchmark.report import messages_table, save  # the report's table and its way to write a figure
from common.engine import BatchedMPE, make_envs
from common.envs import EPISODE_LENGTH
from common.utils import load_checkpoint
from maddpg import LocalPolicies  # the student of ctedd_distill.py is the same class

ROOT = Path(__file__).resolve().parents[2]
TASKS = ("simple_speaker_listener", "simple_reference")
SENDERS = {  # run name -> (method label, k)
    "ctedd_distill__k1": ("CTEDD-1", 1),
    "ctedd_distill__k3": ("CTEDD-3", 3),
    "maddpg_k1_differentiable": ("MADDPG-1 (diff.)", 1),
    "maddpg_k3_differentiable": ("MADDPG-3 (diff.)", 3),
    "maddpg_k1_reinforced": ("MADDPG-1 (reinf.)", 1),
    "maddpg_k3_reinforced": ("MADDPG-3 (reinf.)", 3),
}
SEED = 10_000


def load_policy(path: str, envs: BatchedMPE) -> LocalPolicies:
    checkpoint = load_checkpoint(path)
    saved = checkpoint["args"]
    policy = LocalPolicies(
        envs.num_agents, envs.obs_width, saved["hidden_dim"], saved["message_bits"], saved["message_type"]
    )
    policy.load_state_dict(checkpoint["policy"])
    return policy.eval()


def rollout(policy: LocalPolicies, envs: BatchedMPE, seeds: list[int], goals: np.ndarray | None = None):
    """One episode in each environment, environment i started as mpe2's reset(seed=seeds[i]): the bits
    sent (T, N, B, k), the goals (G, B) and the agents' positions (T, A, 2, B)."""
    envs.reset(seed=seeds)
    if goals is not None:  # choose the goals of the episode (the starting positions stay mpe2's)
        envs.goals[:] = goals
    obs, state = envs.observe(envs.view())
    bits, positions = [], []
    with torch.no_grad():
        for _ in range(EPISODE_LENGTH):
            obs_t = torch.from_numpy(obs).transpose(0, 1)
            bits.append(policy.messages(obs_t).numpy() if policy.message_bits else np.zeros((*obs_t.shape[:2], 0)))
            positions.append(envs.pos.copy())
            forces = policy(obs_t).transpose(0, 1).numpy()
            obs, state, *_ = envs.step(forces)
    return np.stack(bits), envs.goals.copy(), np.stack(positions)


def mutual_information(pairs: list[tuple[int, tuple]]) -> float:
    """Plug-in I(goal; message) in bits from (goal, message) samples."""
    joint = Counter(pairs)
    goals, messages = Counter(g for g, _ in pairs), Counter(m for _, m in pairs)
    n = len(pairs)
    return float(sum(c / n * np.log2(c * n / (goals[g] * messages[m])) for (g, m), c in joint.items()))


def goal_message_pairs(task: str, bits: np.ndarray, goals: np.ndarray) -> list[tuple[int, tuple]]:
    """(goal known by the sender, its message) at every step of every episode."""
    senders = [0] if task == "simple_speaker_listener" else [0, 1]
    signs = bits > 0
    return [
        (int(goals[i, b]), tuple(int(x) for x in signs[t, i, b]))
        for t in range(bits.shape[0])
        for i in senders
        for b in range(bits.shape[2])
    ]


def find_models(runs_dir: str, task: str, name: str) -> dict[int, str]:
    """seed -> the newest model file of that run."""
    exp = name.split("__")[0]
    found = {}
    for path in sorted(
        glob.glob(os.path.join(runs_dir, f"{task}__{name}__*__*", f"{exp}.cleanrl_model")), key=os.path.getmtime
    ):
        found[int(Path(path).parent.name.split("__")[-2])] = path
    return found


def senders_by_name(runs_dir: str) -> dict:
    """task -> method label -> (k, seed -> model file): the grid's run names under `runs_dir`."""
    return {
        task: {label: (k, find_models(runs_dir, task, name)) for name, (label, k) in SENDERS.items()} for task in TASKS
    }


def senders_of_results(results_dir: str, runs_dirs: list[str]) -> dict:
    """task -> method label -> (k, seed -> model file, seed -> kept result's sha256) for the kept results of
    `results_dir` that send bits, each found as the run (under `runs_dirs`) whose result.json has the same bytes.
    A kept result whose run is not there is named and skipped."""
    from benchmark.report import load_results, style

    runs = {}
    for runs_dir in runs_dirs:
        for result in glob.glob(os.path.join(runs_dir, "*", "result.json")):
            models = glob.glob(os.path.join(os.path.dirname(result), "*.cleanrl_model"))
            if models:
                runs[Path(result).read_bytes()] = models[0]
    results = load_results(Path(results_dir))
    found = defaultdict(dict)
    for task in TASKS:
        for arm, seeds in results.get(task, {}).items():
            k = next(iter(seeds.values()))["args"].get("message_bits", 0)
            if not k:
                continue
            models, hashes = {}, {}
            for seed in seeds:
                kept = Path(results_dir, task, f"{arm}__{seed}.json").read_bytes()
                hashes[seed] = hashlib.sha256(kept).hexdigest()
                if kept in runs:
                    models[seed] = runs[kept]
                else:
                    print(f"no run with the kept result {task}/{arm}__{seed}.json under {', '.join(runs_dirs)}")
            found[task][style(results, arm)[0]] = (k, models, hashes)
    return found


def analyse(senders: dict, episodes: int) -> dict:
    """senders: task -> method label -> (k, seed -> model file[, seed -> kept result's sha256])."""
    report = defaultdict(dict)
    for task, methods in senders.items():
        envs = make_envs({"env_id": task}, episodes)
        for label, (k, models, *hashes) in methods.items():
            per_seed = {}
            for seed, path in sorted(models.items()):
                bits, goals, _ = rollout(load_policy(path, envs), envs, [SEED + i for i in range(episodes)])
                pairs = goal_message_pairs(task, bits, goals)
                table = defaultdict(Counter)
                for goal, message in pairs:
                    table[goal]["".join("1" if b else "0" for b in message)] += 1
                per_seed[seed] = {
                    "mutual_information": mutual_information(pairs),
                    "messages": {str(g): dict(c.most_common()) for g, c in sorted(table.items())},
                    **({"result_sha256": hashes[0][seed]} if hashes else {}),
                }
            if per_seed:
                report[task][label] = {"k": k, "seeds": per_seed}
    return report


def with_earlier(report: dict, earlier: dict, senders: dict) -> dict:
    """`report` with each seed entry of `earlier` (a messages.json written before) that it lacks and whose kept
    result is still the one that entry analysed (its run is gone: another machine, an earlier session)."""
    merged = {
        task: {label: {**entry, "seeds": dict(entry["seeds"])} for label, entry in m.items()}
        for task, m in report.items()
    }
    for task, methods in senders.items():
        for label, (k, _, hashes) in methods.items():
            before = earlier.get(task, {}).get(label, {}).get("seeds", {})
            for seed, sha in hashes.items():
                entry = merged.setdefault(task, {}).setdefault(label, {"k": k, "seeds": {}})
                kept = before.get(str(seed))
                if seed not in entry["seeds"] and kept and kept.get("result_sha256") == sha:
                    entry["seeds"][seed] = kept
            if not merged[task][label]["seeds"]:
                del merged[task][label]
    return {task: methods for task, methods in merged.items() if methods}


PATH_PANELS = {  # run name -> panel title, in rows of three
    "ctedd_distill__k0": "CTEDD-0",
    "ctedd_distill__k1": "CTEDD-1",
    "ctedd_distill__k3": "CTEDD-3",
    "maddpg_k0": "MADDPG-0",
    "maddpg_k1_differentiable": "MADDPG-1 (diff.)",
    "maddpg_k3_differentiable": "MADDPG-3 (diff.)",
}


def plot_listener_paths(
    runs_dir: str, seed: int, episode_seed: int, path: str, panels: dict = PATH_PANELS, columns: int = 3
) -> None:
    """One speaker-listener start, its three possible goals: where each policy's listener goes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = make_envs({"env_id": "simple_speaker_listener"}, 3)
    colours = ["#d62728", "#2ca02c", "#1f77b4"]  # the landmarks' own colours: red, green, blue
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4.2 * rows), squeeze=False, sharex=True, sharey=True)
    for ax in axes.ravel()[len(panels) :]:
        ax.set_axis_off()
    for ax, (name, label) in zip(axes.ravel(), panels.items()):
        models = find_models(runs_dir, "simple_speaker_listener", name)
        if seed not in models:
            ax.set_axis_off()
            continue
        # three copies of one start (mpe2's reset(seed=episode_seed)), each with another goal
        _, _, positions = rollout(load_policy(models[seed], envs), envs, [episode_seed] * 3, np.arange(3)[None])
        landmarks = envs.landmarks[..., 0]
        for g in range(3):
            track = positions[:, 1, :, g]  # the listener, in the episode whose goal is landmark g
            width = 5.0 - 1.8 * g  # paths that coincide (the same message) show as a thick line under a thin one
            ax.plot(track[:, 0], track[:, 1], "-", color=colours[g], lw=width, label=f"goal: landmark {g}")
            ax.plot(*track[-1], "o", color=colours[g], ms=4)
            ax.plot(*landmarks[g], "s", color=colours[g], ms=11, mec="black")
        ax.plot(*positions[0, 1, :, 0], "k^", ms=8, label="listener's start")
        ax.set_title(label)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="best")
    fig.suptitle(
        f"simple_speaker_listener, seed {seed}'s policies: the listener's path for each of the 3 goals (squares);\n"
        "goals that get the same message give the same path, drawn thick (landmark 0) under thin (landmark 2)"
    )
    fig.tight_layout()
    save(fig, path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", nargs="+", default=["runs"])
    parser.add_argument("--results-dir", default=None, help="analyse the runs this results tree keeps")
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--write", default=str(ROOT / "benchmark" / "results" / "local" / "messages.json"))
    parser.add_argument("--paths", default=None, help="write the listener-path figure to this PNG")
    parser.add_argument("--paths-seed", type=int, default=1, help="the training seed whose policies the figure shows")
    cli = parser.parse_args()
    if cli.results_dir:
        chosen = senders_of_results(cli.results_dir, cli.runs_dir)
    else:
        chosen = senders_by_name(cli.runs_dir[0])
    result = analyse(chosen, cli.episodes)
    if cli.results_dir and os.path.isfile(cli.write):
        result = with_earlier(result, json.loads(Path(cli.write).read_text()), chosen)
    if not result:
        raise SystemExit(f"error: no saved local policy of {', '.join(TASKS)} under {' '.join(cli.runs_dir)}")
    Path(cli.write).parent.mkdir(parents=True, exist_ok=True)
    Path(cli.write).write_text(json.dumps(result, indent=1) + "\n")
    print(messages_table(result))
    if cli.paths:
        plot_listener_paths(cli.runs_dir[0], cli.paths_seed, SEED, cli.paths)
