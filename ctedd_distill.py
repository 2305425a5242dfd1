# CTEDD stage 2: distil the global policies into local policies that communicate with k bits (arXiv
# 1910.09152, Figure 2 and eq. (2)). Reading guide: README.md, "Reading the code"; docs/stage2.md.
#
# Shapes: N agents, B a batch (consecutive stage-1 transitions, or evaluation episodes), S the full
# state, W the (zero-padded) observation width, k message bits. Per-agent tensors are agent-major,
# (N, B, ...): what AgentLinear computes on and what the replay buffer returns.
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
import tyro

from common import runs
from common.buffer import ReplayBuffer
from common.engine import BatchedMPE, evaluate, make_envs, random_actor
from common.envs import ACTION_DIM, EPISODE_LENGTH, TASK_SETTINGS, describe_episode, log_episode, record_video
from common.layers import AgentLinear, agent_mlp, joint_action
from common.utils import UsageError, check_numbers, load_checkpoint, save_checkpoint


@dataclass
class Args(runs.RunArgs):  # seed, cuda, threads, tracking, video, evaluation: in runs.RunArgs
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    save_model: bool = True
    """whether to save the local policies into the `runs/{run_name}` folder"""

    # Algorithm specific arguments
    global_run: str | None = None
    """the stage-1 run directory `runs/{run_name}` of ctedd_global.py: its checkpoint and replay buffer"""
    teacher: Literal["final", "recorded"] = "final"
    """final: the trained global policy relabels every stored state; recorded: mu(s) stored at collection"""
    message_bits: int = 1
    """k, the bits each agent broadcasts per step (the paper uses 1 and 3)"""
    message_type: Literal["binary", "continuous"] = "binary"
    """binary: k bits in {-1, +1} (straight-through gradients); continuous: k reals in (-1, 1)"""
    hidden_dim: int = 70
    """width of the two hidden layers of every network (as in maddpg.py)"""
    learning_rate: float = 0.002107
    """the learning rate of the local policies"""
    batch_size: int = 1024
    """transitions per chronological batch"""
    iters_per_batch: int = 2
    """gradient steps of eq. (2) on each batch before taking the next one"""
    passes: int = 3
    """how many times to go over the whole buffer"""
    relabel: Literal["stored", "counterfactual"] = "stored"
    """stored: eq. (2) on the stored states; counterfactual: on each stored state once per value of the goals
    drawn at reset (speaker-listener, reference), each relabelled by the teacher, so that where the bits do
    not tell the goal the student learns the teacher's average over the goals they leave open"""
    dagger_rounds: int = 0
    """DAgger after the passes: rounds in which the student acts and the teacher labels the states it visits"""
    dagger_steps: int = 10_000
    """new env steps per DAgger round, one episode in each of dagger_steps // 25 environments (no reward used)"""
    dagger_updates: int = 1_000
    """gradient steps per DAgger round, each on a batch of the visited states and one of the stage-1 buffer"""
    critic_weight: float = 0.0
    """if positive, the stage-1 critic as a second target: the student also ascends this times sum_i Q_i(s, a)"""
    eval_frequency: int = 100_000
    """evaluate the local policies every `eval_frequency` consumed transitions"""


def check_args(args: Args) -> None:
    check_numbers(args)
    if not args.global_run and not args.eval_checkpoint:
        raise UsageError("pass --global-run runs/<stage-1 run> (written by ctedd_global.py)")
    if args.teacher == "recorded" and (args.relabel != "stored" or args.dagger_rounds):
        raise UsageError("--relabel counterfactual and --dagger-rounds label new states: they need --teacher final")


# ALGO LOGIC: initialize agent here:
class StraightThroughSign(torch.autograd.Function):
    """A bit is a bit: forward sign(x) in {-1, +1}; backward the gradient of tanh(x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * (1 - torch.tanh(x) ** 2)


class LocalPolicies(nn.Module):
    """The local policies of all N agents (the paper's Figure 2), in decentralized execution:
    Part 1: m_i = channel(msg_i(o_i)), k values, broadcast to every other agent;
    Part 2: a_i = tanh(act_i(o_i, m_{-i})), the 2-D force, from the messages received this step.
    obs (N, B, W) -> actions (N, B, 2)."""

    def __init__(self, num_agents: int, obs_width: int, hidden: int, message_bits: int, message_type: str):
        super().__init__()
        self.num_agents, self.message_bits, self.message_type = num_agents, message_bits, message_type
        if message_bits > 0:
            self.message_net = agent_mlp(num_agents, obs_width, hidden, message_bits)
        in_features = obs_width + (num_agents - 1) * message_bits
        self.action_net = agent_mlp(num_agents, in_features, hidden, ACTION_DIM)
        # others[i] = the senders agent i hears, in fixed agent order
        others = [[j for j in range(num_agents) if j != i] for i in range(num_agents)]
        self.register_buffer("others", torch.tensor(others, dtype=torch.long).reshape(num_agents, -1))

    def messages(self, obs: torch.Tensor) -> torch.Tensor:
        """Part 1: (N, B, W) -> (N, B, k)."""
        logits = self.message_net(obs)
        if self.message_type == "binary":
            return StraightThroughSign.apply(logits)
        return torch.tanh(logits)

    def received(self, messages: torch.Tensor) -> torch.Tensor:
        """What each agent hears: (N, B, k) -> (N, B, (N-1) * k); row i equals
        torch.cat([messages[j] for j in range(N) if j != i], dim=-1)."""
        n, batch, k = messages.shape
        return messages[self.others].permute(0, 2, 1, 3).reshape(n, batch, (n - 1) * k)

    def preactivation(self, obs: torch.Tensor, messages: torch.Tensor | None = None) -> torch.Tensor:
        """Part 2 before the tanh; `messages` (N, B, k): what was sent this step (default: Part 1 of obs)."""
        if self.message_bits == 0:
            return self.action_net(obs)
        messages = self.messages(obs) if messages is None else messages
        return self.action_net(torch.cat([obs, self.received(messages)], dim=-1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.preactivation(obs))


def mlp(in_features: int, hidden: int) -> nn.Sequential:
    """Two hidden ReLU layers of width `hidden`: (..., in) -> (..., hidden)."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())


class CentralizedQ(nn.Module):
    """ctedd_global.py's centralized Q(s, a_1..a_N), one output per agent, loaded from stage 1 and kept fixed
    (the same code as there, without own_action, which only stage 1's DDPG update reads; a twin: loaded, unread)."""

    def __init__(self, num_agents: int, state_dim: int, hidden: int, twin: bool = False):
        super().__init__()
        self.num_agents = num_agents
        self.net = nn.Sequential(*mlp(state_dim + num_agents * ACTION_DIM, hidden), nn.Linear(hidden, num_agents))
        self.twin = CentralizedQ(num_agents, state_dim, hidden) if twin else None  # not in the paper: TD3's twin

    def forward(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q_i(s, a) of every agent i for one joint action: state (B, S), actions (N, B, A) -> (N, B)."""
        return self.net(torch.cat([state, joint_action(actions)], dim=-1)).T


class Teacher(nn.Module):
    """ctedd_global.py's GlobalPolicy, its deterministic means only: forward(s) = mu(s), with
    mu_i(s) = tanh(head_i(trunk(s))) (omega_i is kept so that the checkpoint loads as saved)."""

    def __init__(self, num_agents: int, state_dim: int, hidden: int):
        super().__init__()
        self.num_agents = num_agents
        self.trunk = mlp(state_dim, hidden)
        self.mean_heads = AgentLinear(num_agents, hidden, ACTION_DIM)
        self.omega = AgentLinear(num_agents, hidden, ACTION_DIM)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        features = self.trunk(state)
        return torch.tanh(self.mean_heads(features.expand(self.num_agents, *features.shape)))


def distillation_loss(student_actions: torch.Tensor, teacher_actions: torch.Tensor) -> torch.Tensor:
    """eq. (2): L_D = mean_B sum_i || mu_i(s) - a_i(o_i, m_{-i}) ||^2, all agents together.
    Both (N, B, 2)."""
    return (teacher_actions - student_actions).pow(2).sum(-1).sum(0).mean()


def student_loss(student, obs, states, targets, critics: CentralizedQ | None = None, critic_weight: float = 0.0):
    """eq. (2); with the critic, minus critic_weight * mean_B sum_i Q_i(s, a), a the students' joint action:
    where the bits leave the goal open, ascending Q averaged over the relabelled goals is the Bayes hedge, which
    the teacher's average action need not be. Its gradient reaches the speakers through the channel."""
    actions = student(obs)
    loss = distillation_loss(actions, targets)
    if critic_weight:
        loss = loss - critic_weight * critics(states, actions).sum(0).mean()
    return loss


def labelled(teacher: Teacher, envs: BatchedMPE, obs: torch.Tensor, states: torch.Tensor, relabel: str):
    """The student's inputs obs (N, B, W), the states (B, S) and the teacher's labels mu(s) (N, B, 2);
    counterfactual: the batch once per possible value of the goals drawn at reset, (N, C*B, ...)."""
    if relabel == "counterfactual":
        versions = [envs.with_goals(obs, states, goals) for goals in envs.goal_assignments()]
        obs, states = torch.cat([o for o, _ in versions], dim=1), torch.cat([s for _, s in versions])
    with torch.no_grad():
        return obs, states, teacher(states)


def dagger_round(envs: BatchedMPE, act, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """DAgger's data: one episode in each environment with the student acting; the states it visited,
    obs (N, T, W) and full states (T, S), T = B * 25, for the teacher to label."""
    obs, state = envs.reset()
    visited_obs, visited_states = [], []
    for _ in range(EPISODE_LENGTH):
        visited_obs.append(obs)
        visited_states.append(state)
        obs, state, *_ = envs.step(act(obs, state))
    visited_obs = torch.from_numpy(np.concatenate(visited_obs)).transpose(0, 1).contiguous()
    return visited_obs.to(device), torch.from_numpy(np.concatenate(visited_states)).to(device)


def local_actor(policy: LocalPolicies, device: torch.device):
    def act(obs: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Decentralized execution: each agent reads its own observation (and the bits it hears).
        obs (B, N, W) -> forces (B, N, 2)."""
        with torch.no_grad():
            return policy(torch.from_numpy(obs).to(device).transpose(0, 1)).transpose(0, 1).cpu().numpy()

    return act


def global_actor(policy: Teacher, device: torch.device):
    def act(obs: np.ndarray, state: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return policy(torch.from_numpy(state).to(device)).transpose(0, 1).cpu().numpy()

    return act


def load_teacher(args: Args, device: torch.device) -> tuple[Teacher, CentralizedQ, dict, BatchedMPE, ReplayBuffer]:
    """The stage-1 run: its global policy and critics and its replay buffer, checked, and the evaluation
    environments of its task (`--eval-episodes` of them)."""
    path, checkpoint, stage1 = runs.stage1_model(args.global_run)
    envs = make_envs(stage1, args.eval_episodes)
    teacher = Teacher(envs.num_agents, envs.state_dim, stage1["hidden_dim"]).to(device)
    # the critics as stage 1 built them (its --critic-hidden-dim and --twin-critics; older runs: without)
    critic_settings = (stage1.get("critic_hidden_dim") or stage1["hidden_dim"], stage1.get("twin_critics", False))
    critics = CentralizedQ(envs.num_agents, envs.state_dim, *critic_settings)
    critics = critics.to(device).requires_grad_(False)
    try:
        teacher.load_state_dict(checkpoint.get("policy", {}))
        critics.load_state_dict(checkpoint.get("critics", {}))
    except RuntimeError as err:
        raise UsageError(f"checkpoint {path} is not a ctedd_global.py global policy for {envs.task}") from err
    path = os.path.join(args.global_run, "buffer.npz")
    rb = ReplayBuffer.load(
        path, envs.task, envs.num_agents, envs.obs_width, envs.state_dim, device=device, seed=args.seed
    )
    if args.teacher == "recorded" and not rb.with_means:
        raise UsageError(f"{args.global_run}/buffer.npz has no recorded policy means; use --teacher final")
    return teacher, critics, stage1, envs, rb


def evaluate_checkpoint(args: Args, device: torch.device) -> dict:
    checkpoint = load_checkpoint(args.eval_checkpoint)
    runs.check_written_by(checkpoint, args.eval_checkpoint, os.path.basename(__file__), Args.__dataclass_fields__)
    saved = runs.model_settings(checkpoint, args.eval_checkpoint)
    envs = make_envs(saved, args.eval_episodes)
    policy = LocalPolicies(
        envs.num_agents, envs.obs_width, saved["hidden_dim"], saved["message_bits"], saved["message_type"]
    )
    try:
        policy.to(device).load_state_dict(checkpoint["policy"])
    except (KeyError, RuntimeError) as err:
        reason = " ".join(str(err).split())  # torch's lists of missing and unexpected keys, on one line
        raise UsageError(f"checkpoint {args.eval_checkpoint} does not fit {envs.task}: {reason}") from err
    act = local_actor(policy, device)
    result = evaluate(envs, act, runs.EVAL_SEED)
    if args.capture_video:
        record_video(saved, act, runs.EVAL_SEED, f"videos/{os.path.basename(args.eval_checkpoint)}-eval.gif")
    print(f"eval over {args.eval_episodes} episodes: {describe_episode(result)}")
    return result


def main(args: Args) -> dict:
    check_args(args)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    if args.eval_checkpoint:
        return evaluate_checkpoint(args, device)
    teacher, critics, stage1, eval_envs, rb = load_teacher(args, device)
    run_name = f"{eval_envs.task}__{args.exp_name}__k{args.message_bits}__{args.seed}__{int(time.time())}"
    writer = runs.start_run(args, f"runs/{run_name}")  # tensorboard with the hyperparameter table, and wandb

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic

    # env setup (load_teacher): for evaluation only; eq. (2) uses no new environment samples (DAgger's are counted)
    if args.relabel == "counterfactual":
        eval_envs.goal_assignments()  # a task without goals drawn at reset is refused here, in one line
    num_agents, obs_width = eval_envs.num_agents, eval_envs.obs_width
    student = LocalPolicies(num_agents, obs_width, args.hidden_dim, args.message_bits, args.message_type)
    student = student.to(device)
    optimizer = optim.Adam(student.parameters(), lr=args.learning_rate, fused=True)
    act = local_actor(student, device)

    teacher_result = evaluate(eval_envs, global_actor(teacher, device), runs.EVAL_SEED)
    random_result = evaluate(eval_envs, random_actor(args.seed), runs.EVAL_SEED)
    log_episode(writer, "teacher", teacher_result, rb.num_added)

    def teacher_fraction(result: dict) -> float:
        """The fraction of the teacher's return (above random actions) that the local policies keep."""
        gap = teacher_result["sum"] - random_result["sum"]
        return (result["sum"] - random_result["sum"]) / gap if abs(gap) > 1e-9 else float("nan")

    print(f"teacher (CTEDD-G) return {teacher_result['sum']:.2f}, random actions {random_result['sum']:.2f}")
    start_time = time.time()
    consumed, next_eval = 0, args.eval_frequency
    evaluations, losses = [], []  # (env step, mean returns) and (env step, eq. (2) loss) along the first pass
    for pass_index in range(args.passes):
        # the stage-1 samples in chronological order: oldest first, across the ring's wrap-around
        for data in rb.iter_chronological(args.batch_size):
            if args.teacher == "final":
                obs, states, targets = labelled(teacher, eval_envs, data.obs, data.states, args.relabel)
            else:
                obs, states, targets = data.obs, data.states, data.policy_means
            for _ in range(args.iters_per_batch):
                # ALGO LOGIC: eq. (2), end to end through the k-bit channel; each agent sees only its own obs
                loss = student_loss(student, obs, states, targets, critics, args.critic_weight)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            consumed += len(data.states)
            env_step = int(data.env_steps[-1]) + 1  # the newest consumed sample was collected at this step
            if pass_index == 0:
                writer.add_scalar("losses/distill_loss", loss.item(), env_step)
                writer.add_scalar("charts/consumed_env_step", env_step, consumed)
                losses.append((env_step, loss.item()))
            if consumed >= next_eval and pass_index == 0:
                next_eval += args.eval_frequency
                result = evaluate(eval_envs, act, runs.EVAL_SEED)
                log_episode(writer, "eval", result, env_step)
                evaluations.append((env_step, result))
                writer.add_scalar("eval/teacher_fraction", teacher_fraction(result), env_step)
                print(f"env step {env_step}: loss {loss.item():.4f}, eval return {result['sum']:.2f}")

        result = evaluate(eval_envs, act, runs.EVAL_SEED)
        if args.capture_video:
            record_video(stage1, act, runs.EVAL_SEED, f"videos/{run_name}/pass_{pass_index + 1}.gif")
        log_episode(writer, "eval_after_pass", result, pass_index + 1)
        writer.add_scalar("eval_after_pass/teacher_fraction", teacher_fraction(result), pass_index + 1)
    if args.passes == 1:
        log_episode(writer, "eval", result, rb.num_added)
        writer.add_scalar("eval/teacher_fraction", teacher_fraction(result), rb.num_added)
    evaluations = [(step, e) for step, e in evaluations if step < rb.num_added] + [(rb.num_added, result)]

    # DAgger: the student's own states, labelled by the teacher, join the stage-1 data (new env samples)
    dagger_envs = make_envs(stage1, args.dagger_steps // EPISODE_LENGTH, seed=args.seed) if args.dagger_rounds else None
    visited, new_samples = [], 0
    for _ in range(args.dagger_rounds):
        visited.append(dagger_round(dagger_envs, act, device))
        visited_obs, visited_states = torch.cat([o for o, _ in visited], 1), torch.cat([s for _, s in visited])
        new_samples = len(visited_states)
        for _ in range(args.dagger_updates):
            data = rb.sample(args.batch_size)
            picked = torch.randint(len(visited_states), (args.batch_size,)).to(device)
            obs = torch.cat([data.obs, visited_obs[:, picked]], dim=1)
            states = torch.cat([data.states, visited_states[picked]])
            obs, states, targets = labelled(teacher, eval_envs, obs, states, args.relabel)
            loss = student_loss(student, obs, states, targets, critics, args.critic_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        result = evaluate(eval_envs, act, runs.EVAL_SEED)
        env_step = rb.num_added + new_samples
        log_episode(writer, "eval", result, env_step)
        writer.add_scalar("charts/stage2_env_steps", new_samples, env_step)
        evaluations.append((env_step, result))
        print(f"DAgger, {new_samples} new env steps: loss {loss.item():.4f}, eval return {result['sum']:.2f}")

    minutes, kept_fraction = (time.time() - start_time) / 60, teacher_fraction(result)
    writer.add_scalar("charts/distill_minutes", minutes, rb.num_added)
    settings = {**vars(args), **{key: stage1.get(key) for key in TASK_SETTINGS}}
    extra = dict(
        teacher=teacher_result, random=random_result, kept=kept_fraction, losses=losses, stage2_env_steps=new_samples
    )
    runs.save_result(
        f"runs/{run_name}", __file__, settings, evaluations, {"distill": 60 * minutes}, start_time, **extra
    )
    print(f"final eval: {describe_episode(result)} | teacher {teacher_result['sum']:.2f} | {minutes:.1f} min")
    print(f"the local policies kept {kept_fraction:.3f} of the teacher's return above random actions")
    if args.save_model:
        model_path, script = f"runs/{run_name}/{args.exp_name}.cleanrl_model", os.path.basename(__file__)
        save_checkpoint(model_path, {"args": settings, "script": script, "policy": student.state_dict()})
        print(f"model saved to {model_path}; evaluate it with: python {script} --eval-checkpoint {model_path}")
    runs.end_run(writer, args)
    return {**result, "teacher": teacher_result["sum"], "random": random_result["sum"], "kept": kept_fraction}


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except UsageError as err:
        sys.exit(f"error: {err}")
