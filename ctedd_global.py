# CTEDD stage 1: global policies on the full state, with centralized training and exploration (arXiv
# 1910.09152, Figure 1 and eq. (1)). Reading guide: README.md, "Reading the code"; docs/stage1.md.
#
# Shapes: N agents, B a batch (replay samples, the environments stepped together, or eq. (1)'s recent
# transitions), S the full state, W the (zero-padded) observation width, A an agent's action width (its
# 2-D force; in maddpg.py's reinforced channel also its k bits). Per-agent tensors are agent-major,
# (N, B, ...): what AgentLinear computes on and what the replay buffer returns. The environments are
# batch-major, (B, N, ...).
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
import tyro

from common import runs
from common.buffer import ReplayBuffer
from common.engine import BatchedMPE, evaluate, make_envs
from common.envs import ACTION_DIM, check_task, describe_episode, log_episode, record_video
from common.utils import UsageError, check_numbers, multiples_in, progress_line, timing_line


@dataclass
class Args(runs.RunArgs):  # seed, cuda, threads, tracking, video: in runs.RunArgs
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    save_model: bool = True
    """whether to save the model and the replay buffer (stage 2 needs both) into `runs/{run_name}`"""
    eval_checkpoint: str | None = None
    """if given, load this checkpoint and only evaluate it (no training)"""
    checkpoint_frequency: int = 0
    """write a resumable checkpoint (networks, optimizers, replay buffer) every N env steps (0: never)"""
    resume: str | None = None
    """a run directory `runs/{run_name}` to continue from its last checkpoint"""

    # Algorithm specific arguments. The learning settings are the best single setting of benchmark/tune.py
    # across the channel tasks tuned so far (docs/tuning.md)
    env_id: str = "simple_push"
    """the MPE environment: simple_push, simple_tag, simple_spread, simple_adversary, simple_speaker_listener
    or simple_reference"""
    opponents: Literal["learn", "scripted"] = "learn"
    """learn: every agent is trained; scripted: simple_tag's prey / simple_push's adversary are scripted"""
    agent_neighbors: int | None = None
    """partial observation (spread, tag, adversary): each agent sees only its N nearest other agents"""
    landmark_neighbors: int | None = None
    """partial observation (spread, tag, adversary): each agent sees only its N nearest landmarks"""
    total_timesteps: int = 1_000_000
    """total env steps of the experiment, summed over the environments (rounded up to a multiple of num_envs)"""
    num_envs: int = 16
    """environments stepped together by the batched engine (16: see README, "Speed")"""
    learning_rate: float = 6.278e-4
    """the actors' learning rate (and omega_i's and alpha's)"""
    critic_learning_rate: float = 7.61e-3
    """the critics' learning rate"""
    buffer_size: int = 1_000_000
    """the replay memory buffer size"""
    gamma: float = 0.95
    """the discount factor gamma"""
    tau: float = 6.085e-3
    """target smoothing coefficient"""
    batch_size: int = 711
    """the batch size of samples from the replay memory"""
    learning_starts: int = 25_600
    """env step at which learning starts"""
    train_frequency: int = 84
    """one learning iteration each `train_frequency` env steps; eq. (1)'s B = the transitions in between"""
    max_grad_norm: float = 0.5
    """the maximum gradient norm, over all the parameters of an optimizer"""
    actor_reg: float = 1.059e-4
    """weight of the squared pre-tanh action penalty (as in the original MADDPG code)"""
    hidden_dim: int = 64
    """width of the two hidden layers of every network"""
    eval_frequency: int = 50_000
    """evaluate the deterministic policies every `eval_frequency` env steps"""
    eval_episodes: int = 100
    """episodes per evaluation, all at once, on the fixed seeds 10_000, 10_001, ... (mpe2's own starts)"""
    alpha: float = 0.1
    """the entropy regularization factor of eq. (1): its start value, or with `--target-entropy None` fixed"""
    target_entropy: float | None = -0.8737
    """alpha is tuned per agent toward this entropy per action dimension, in nats (-0.8737: sigma 0.101), as in SAC;
    None: alpha stays fixed (docs/omega.md)"""
    pg_baseline: bool = True
    """subtract Q_i(s, mu(s)) from Q_i(s, a) in eq. (1); `--no-pg-baseline` is eq. (1) as written (docs/omega.md)"""
    omega_reg: float = 1e-3
    """weight of the squared pre-squash output of omega_i (as --actor-reg for the means); 0: eq. (1) alone"""
    fixed_sigma: float | None = None
    """the ablation of the learned exploration: explore with this fixed sigma (omega_i and eq. (1) are off)"""


# paper is silent; we squash log sigma_i into [-5, 0]: sigma <= 1 spans the whole action range [-1, 1]
LOG_STD_MIN, LOG_STD_MAX = -5.0, 0.0


def check_args(args: Args) -> None:
    check_numbers(args)
    check_task(args.env_id, args.opponents, args.agent_neighbors, args.landmark_neighbors)
    runs.check_saving(args)
    if args.target_entropy is not None and args.alpha <= 0:
        raise UsageError("--target-entropy tunes alpha from its start value: --alpha must be positive")


# ALGO LOGIC: initialize agent here:
def squash_log_std(x: torch.Tensor) -> torch.Tensor:
    return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(x) + 1)


class AgentLinear(nn.Module):
    """One linear layer per agent, all evaluated in one batched matmul: (N, B, in) -> (N, B, out).
    Equals, for each agent i, nn.Linear(in, out) applied to x[i] (a test checks it)."""

    def __init__(self, num_agents: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1 / np.sqrt(in_features)  # nn.Linear's default initialisation
        # drawn (in, out) as before, stored (out, in) as nn.Linear's: MKL multiplies by a narrow layer's
        # transposed weight (actions, Q) 4-5x faster (docs/speed.md)
        weight = torch.empty(num_agents, in_features, out_features).uniform_(-bound, bound)
        self.weight = nn.Parameter(weight.transpose(1, 2).contiguous())
        self.bias = nn.Parameter(torch.empty(num_agents, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight.transpose(1, 2))


def mlp(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, out_features),
    )


class GlobalPolicy(nn.Module):
    """The global policies of all N agents on the full state s (the paper's Figure 1): a shared global
    DNN (trunk) and per agent a mean head, mu_i(s) = tanh(head_i(trunk(s))), and a local component
    omega_i, log sigma_i(s) = omega_i(trunk(s)): pi_i(a_i | s) = N(mu_i(s), diag sigma_i(s)^2)."""

    def __init__(self, num_agents: int, state_dim: int, hidden: int):
        super().__init__()
        self.num_agents = num_agents
        self.trunk = nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.mean_heads = AgentLinear(num_agents, hidden, ACTION_DIM)
        # paper is silent on omega_i's shape; we use one linear layer per agent on the trunk features
        self.omega = AgentLinear(num_agents, hidden, ACTION_DIM)

    def forward(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """state (B, S) -> the means' preactivation (mu_i(s) = its tanh) and log sigma_i(s), (N, B, 2) each.
        omega_i reads the trunk's features detached: it never moves the trunk."""
        features = self.features(state)
        return self.mean_heads(features), squash_log_std(self.omega(features.detach()))

    def features(self, state: torch.Tensor) -> torch.Tensor:
        """The shared trunk's features of state (B, S), one copy per agent: (N, B, hidden)."""
        return self.trunk(state).expand(self.num_agents, *state.shape[:-1], -1)

    def omega_preactivation(self, state: torch.Tensor) -> torch.Tensor:
        """omega_i's output before the squash, (N, B, 2); log sigma_i(s) = squash_log_std(it)."""
        return self.omega(self.features(state).detach())

    def ddpg_parameters(self) -> list[nn.Parameter]:
        return [*self.trunk.parameters(), *self.mean_heads.parameters()]


class Critics(nn.Module):
    """The centralized Q-network Q(s, a_1..a_N). Paper is silent on mixed tasks (push, tag); we use one
    network with one output per agent, Q_i, which coincide in cooperative tasks. Actions come
    agent-major, (N, B, A)."""

    def __init__(self, num_agents: int, state_dim: int, hidden: int):
        super().__init__()
        self.num_agents = num_agents
        self.net = mlp(state_dim + num_agents * ACTION_DIM, hidden, num_agents)

    def forward(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q_i(s, a) of every agent i for one joint action: state (B, S), actions (N, B, A) -> (N, B)."""
        return self.net(torch.cat([state, joint_action(actions)], dim=-1)).T

    def own_action(self, state: torch.Tensor, actions: torch.Tensor, own_actions: torch.Tensor) -> torch.Tensor:
        """Q_i(s, a) where agent i's action is own_actions[i] and the others' are `actions`: (N, B)."""
        joint = own_action_joint(actions, own_actions)
        q = self.net(torch.cat([state.expand(self.num_agents, *state.shape), joint], dim=-1))  # (N, B, N)
        return q.diagonal(dim1=0, dim2=2).T  # Q_i read on agent i's own joint action


def joint_action(actions: torch.Tensor) -> torch.Tensor:
    """Every agent's action side by side, in agent order: (N, B, A) -> (B, N * A)."""
    return actions.transpose(0, 1).reshape(actions.shape[1], -1)


def own_action_joint(actions: torch.Tensor, own_actions: torch.Tensor) -> torch.Tensor:
    """Agent i's joint action has its own slot from own_actions and the others' from actions:
    both (N, B, A) -> (N, B, N * A); row i equals joint_action(actions with row i replaced)."""
    n, batch, action_dim = own_actions.shape
    own = torch.eye(n, device=own_actions.device).view(n, 1, n, 1)  # own[i, :, j] = [i == j]
    joint = own * own_actions.transpose(0, 1) + (1 - own) * actions.transpose(0, 1)
    return joint.reshape(n, batch, n * action_dim)


def td_target(rewards, terminations, next_q, gamma):
    """y_i = r_i + gamma * (1 - termination) * Q'_i(s', a'). Only a termination stops the bootstrap;
    MPE's 25-step time limit is a truncation, stored as termination = 0.
    rewards (N, B), terminations (B,), next_q (N, B) -> (N, B)."""
    return rewards + gamma * (1.0 - terminations) * next_q


def soft_update(net: nn.Module, target: nn.Module, tau: float) -> None:
    """theta' <- (1 - tau) theta' + tau theta, every parameter in one call."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(net.parameters()), tau)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    return (-0.5 * ((x - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    return (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)


def omega_loss(log_std, sampled_actions, means, q, alpha):
    """eq. (1) as a loss to minimise, per agent i, over the on-policy batch B:
    -( mean_B[ log pi_i(a_i | s) * Q_i(s, a) ] + alpha * mean_B[ H(pi_i(. | s)) ] ).
    Paper is silent on the scale of the entropy term (a sum over B in eq. (1)); we average both terms.
    log_std, sampled_actions (as drawn, before clipping), means: (N, B, 2); q: (N, B), no gradient.
    Returns the loss summed over agents, and the policy-gradient and entropy terms per agent."""
    policy_gradient = (gaussian_log_prob(sampled_actions, means, log_std) * q).mean(1)
    entropy = gaussian_entropy(log_std).mean(1)
    return -(policy_gradient + alpha * entropy).sum(), policy_gradient, entropy


def omega_penalty(preactivation: torch.Tensor, weight: float) -> torch.Tensor:
    """Ours (--omega-reg): weight * mean_B of omega_i's squared pre-squash output, summed over agents. It
    keeps the output off tanh's flat tails, where eq. (1)'s gradient vanishes and Adam drives it ever deeper."""
    return weight * preactivation.pow(2).mean(1).sum()


class Temperature(nn.Module):
    """alpha_i of eq. (1), one per agent: fixed, or with a target entropy tuned as SAC's temperature: the loss
    log alpha_i * (H(pi_i) - target) lowers alpha_i while pi_i's entropy is above the target, and raises it below."""

    def __init__(self, num_agents: int, alpha: float, target_entropy: float | None):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.full((num_agents,), math.log(alpha) if alpha > 0 else -math.inf))
        self.target = None if target_entropy is None else target_entropy * ACTION_DIM  # per agent: both dimensions

    def forward(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    def loss(self, entropy: torch.Tensor) -> torch.Tensor:
        return (self.log_alpha * (entropy.detach() - self.target)).sum()


def omega_diagnostics(log_std, sampled_actions, means, q) -> dict:
    """What moves omega_i, per agent and action dimension, at log sigma (before the squash): the batch mean of
    the score term's gradient q * ((a - mu)^2 / sigma^2 - 1) and its signal-to-noise ratio (mean over standard
    error); sigma's mean, the spread (std) of log sigma across the batch's states, the share of clipped samples."""
    with torch.no_grad():
        per_sample = q[..., None] * (((sampled_actions - means) / log_std.exp()) ** 2 - 1)  # (N, B, 2)
        mean, error = per_sample.mean(1), per_sample.std(1) / math.sqrt(per_sample.shape[1])
        return {
            "pg_gradient": mean.tolist(),
            "pg_snr": (mean.abs() / error.clamp(min=1e-12)).tolist(),
            "sigma": log_std.exp().mean(1).tolist(),
            "log_sigma_spread": log_std.std(1).tolist(),
            "clipped": (sampled_actions.abs() > 1).float().mean(1).tolist(),
        }


class RecentBatch:
    """eq. (1)'s batch B: the transitions collected since the last learning iteration, as the policy
    sampled them: states (B, S), Gaussian samples as drawn and the means they were drawn around
    (N, B, 2). Taken (and emptied) at each learning iteration."""

    def __init__(self):
        self.parts = []

    def add(self, states: torch.Tensor, samples: torch.Tensor, means: torch.Tensor) -> None:
        self.parts.append((states, samples, means))

    def take(self, chunks: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The batch, split into `chunks` consecutive parts (one per learning iteration due now)."""
        states, samples, means = (torch.cat(field, dim) for field, dim in zip(zip(*self.parts), (0, 1, 1)))
        self.parts = []
        return [(states[i], samples[:, i], means[:, i]) for i in np.array_split(np.arange(len(states)), chunks)]


def make_policy(args: Args, envs: BatchedMPE) -> GlobalPolicy:
    return GlobalPolicy(envs.num_agents, envs.state_dim, args.hidden_dim)


def deterministic_actor(policy: GlobalPolicy, device: torch.device):
    def act(obs: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Centralized execution: every agent's action is a function of the full state.
        state (B, S) -> forces (B, N, 2)."""
        with torch.no_grad():
            return torch.tanh(policy(torch.from_numpy(state).to(device))[0]).transpose(0, 1).cpu().numpy()

    return act


def main(args: Args) -> dict:
    check_args(args)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    if args.eval_checkpoint:
        return runs.evaluate_checkpoint(args, Args, make_policy, deterministic_actor, device)
    args, checkpoint, run_name = runs.start_or_resume(args, Args)  # checkpoint: None unless --resume
    run_dir = f"runs/{run_name}"
    writer = runs.start_run(args, run_dir)  # tensorboard with the hyperparameter table, and wandb with --track

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic

    # env setup: B environments stepped together; evaluation runs its episodes as one batch
    envs = make_envs(vars(args), args.num_envs, seed=args.seed)
    eval_envs = make_envs(vars(args), args.eval_episodes)
    num_agents = envs.num_agents

    policy = make_policy(args, envs).to(device)
    target_policy = make_policy(args, envs).to(device)
    target_policy.load_state_dict(policy.state_dict())
    critics = Critics(num_agents, envs.state_dim, args.hidden_dim).to(device)
    target_critics = Critics(num_agents, envs.state_dim, args.hidden_dim).to(device)
    target_critics.load_state_dict(critics.state_dict())
    q_optimizer = optim.Adam(critics.parameters(), lr=args.critic_learning_rate, fused=True)
    actor_optimizer = optim.Adam(policy.ddpg_parameters(), lr=args.learning_rate, fused=True)
    omega_optimizer = optim.Adam(policy.omega.parameters(), lr=args.learning_rate, fused=True)
    temperature = Temperature(num_agents, args.alpha, args.target_entropy).to(device)
    alpha_optimizer = optim.Adam(temperature.parameters(), lr=args.learning_rate, fused=True)

    # the buffer also records the teacher's mean action mu(s) at collection time, for stage 2
    capacity = min(args.buffer_size, args.total_timesteps)
    rb = ReplayBuffer(
        capacity, num_agents, envs.obs_width, envs.state_dim, with_teacher=True, device=device, seed=args.seed
    )
    modules = dict(policy=policy, target_policy=target_policy, critics=critics, target_critics=target_critics)
    modules.update(q_optimizer=q_optimizer, actor_optimizer=actor_optimizer, omega_optimizer=omega_optimizer)
    modules.update(temperature=temperature, alpha_optimizer=alpha_optimizer)
    recent = RecentBatch()
    diagnostics = []  # what moves omega_i, every 100 learning iterations (README, "What omega_i learns")
    start_step, evaluations = 0, []  # evaluations: (env step, mean returns), the learning curve
    if checkpoint is not None:
        start_step, evaluations, rb, loop = runs.restore(checkpoint, modules, run_dir, rb, envs)
        recent.parts, diagnostics = loop["recent"], loop["omega"]
    act = deterministic_actor(policy, device)
    seconds = {"env": 0.0, "act": 0.0, "update": 0.0, "eval": 0.0}
    recent_returns = []
    start_time = time.time()

    # TRY NOT TO MODIFY: start the game
    obs, state = envs.reset(seed=args.seed) if checkpoint is None else envs.observe(envs.view())
    for global_step in range(start_step, args.total_timesteps, args.num_envs):
        # ALGO LOGIC: put action logic here
        tick = time.perf_counter()
        with torch.no_grad():
            state_t = torch.from_numpy(state).to(device)
            preactivation, log_std = policy(state_t)
            means = torch.tanh(preactivation)
            # a_i ~ pi_i(. | s) for all agents from one shared trunk: joint, coordinated exploration
            sigma = log_std.exp() if args.fixed_sigma is None else args.fixed_sigma
            samples = means + sigma * torch.randn_like(means)
            recent.add(state_t, samples, means)
            forces = samples.clamp(-1.0, 1.0).transpose(0, 1).cpu().numpy()
        seconds["act"] += time.perf_counter() - tick

        # TRY NOT TO MODIFY: execute the game and log data.
        tick = time.perf_counter()
        next_obs, next_state, rewards, terminations, truncations, infos = envs.step(forces)
        seconds["env"] += time.perf_counter() - tick

        # done = termination only: the TD target bootstraps through the 25-step time limit
        rb.add(state, obs, forces, rewards, terminations, next_state, next_obs, means.transpose(0, 1).cpu().numpy())
        obs, state = next_obs, next_state
        if "episode" in infos:  # episodes ended: log them, start new ones there
            log_episode(writer, "charts", infos["episode"], global_step)
            recent_returns = (recent_returns + infos["episode"]["sums"])[-100:]
            obs, state = envs.reset_done()

        # ALGO LOGIC: training, one learning iteration per train_frequency env steps
        iterations = multiples_in(global_step, global_step + args.num_envs, args.train_frequency, args.learning_starts)
        for recent_states, recent_samples, recent_means in recent.take(iterations) if iterations else []:
            tick = time.perf_counter()
            data = rb.sample(args.batch_size)
            with torch.no_grad():
                next_actions = torch.tanh(target_policy(data.next_states)[0])
                next_q = target_critics(data.next_states, next_actions)
                target_q = td_target(data.rewards, data.terminations, next_q, args.gamma)
            q_values = critics(data.states, data.actions)
            qf_loss = F.mse_loss(q_values, target_q) * num_agents  # sum over agents of per-agent MSE

            q_optimizer.zero_grad()
            qf_loss.backward()
            nn.utils.clip_grad_norm_(critics.parameters(), args.max_grad_norm)
            q_optimizer.step()

            # eq. (1): max-entropy policy gradient for omega_i, on the batch B of transitions collected
            # since the last learning iteration (on-policy data, not the replay buffer), before the trunk
            # moves: sigma_i(s) is that of the policy that drew the samples. alpha_i is tuned toward a target
            # entropy: any fixed alpha >= 0.1 outweighs the Q term and pins sigma at 1 (docs/omega.md).
            if args.fixed_sigma is None:  # (--fixed-sigma, the ablation, has no omega_i to train)
                alpha = temperature()
                with torch.no_grad():
                    q_b = critics(recent_states, recent_samples.clamp(-1.0, 1.0))  # Q_i at the executed actions
                    if args.pg_baseline:  # variance reduction: Q_i(s, a) - Q_i(s, mu(s)), mu as used for sampling
                        q_b = q_b - critics(recent_states, recent_means)
                omega_preactivation = policy.omega_preactivation(recent_states)
                log_std_b = squash_log_std(omega_preactivation)
                omega_loss_value, omega_pg, entropy = omega_loss(log_std_b, recent_samples, recent_means, q_b, alpha)
                omega_loss_value = omega_loss_value + omega_penalty(omega_preactivation, args.omega_reg)
                omega_optimizer.zero_grad()
                omega_loss_value.backward()
                nn.utils.clip_grad_norm_(policy.omega.parameters(), args.max_grad_norm)
                omega_optimizer.step()
                if args.target_entropy is not None:  # alpha_i toward the target entropy
                    alpha_optimizer.zero_grad()
                    temperature.loss(entropy).backward()
                    alpha_optimizer.step()

            # DDPG update of the trunk and mean heads: agent i ascends Q_i(s, mu(s)) through its own mean
            # mu_i only; paper is silent on the others' actions: their current means, held fixed
            preactivation, _ = policy(data.states)
            means_b = torch.tanh(preactivation)
            critics.requires_grad_(False)  # the actor loss needs dQ/da only: skip the critics' weight gradients
            actor_loss = -critics.own_action(data.states, means_b.detach(), means_b).mean(1).sum()
            actor_loss = actor_loss + args.actor_reg * preactivation.pow(2).mean(1).sum()
            actor_optimizer.zero_grad()
            actor_loss.backward()
            critics.requires_grad_(True)
            nn.utils.clip_grad_norm_(policy.ddpg_parameters(), args.max_grad_norm)
            actor_optimizer.step()

            # update the target networks
            soft_update(policy, target_policy, args.tau)
            soft_update(critics, target_critics, args.tau)
            seconds["update"] += time.perf_counter() - tick

        if multiples_in(global_step, global_step + args.num_envs, 100 * args.train_frequency, args.learning_starts):
            sps = int((global_step + args.num_envs - start_step) / (time.time() - start_time))
            writer.add_scalar("losses/qf_values", q_values.mean().item(), global_step)
            writer.add_scalar("losses/qf_loss", qf_loss.item() / num_agents, global_step)
            writer.add_scalar("losses/actor_loss", actor_loss.item() / num_agents, global_step)
            if args.fixed_sigma is None:
                found = omega_diagnostics(log_std_b, recent_samples, recent_means, q_b)
                diagnostics.append({"step": global_step, "alpha": alpha.tolist(), **found})
                writer.add_scalar("losses/omega_pg", omega_pg.mean().item(), global_step)
                writer.add_scalar("losses/entropy", entropy.mean().item(), global_step)
                for i, agent in enumerate(envs.agents):
                    writer.add_scalar(f"charts/exploration_std/{agent}", log_std_b[i].exp().mean().item(), global_step)
                for name in ("alpha", "log_sigma_spread", "pg_snr"):
                    writer.add_scalar(f"omega/{name}", float(np.mean(diagnostics[-1][name])), global_step)
            writer.add_scalar("charts/SPS", sps, global_step)
            for name, value in seconds.items():
                writer.add_scalar(f"perf/{name}_seconds", value, global_step)
            print(progress_line(global_step, args.total_timesteps, start_step, start_time, recent_returns, seconds))

        done_steps = global_step + args.num_envs
        if multiples_in(global_step + 1, done_steps + 1, args.eval_frequency) or done_steps >= args.total_timesteps:
            tick = time.perf_counter()
            result = evaluate(eval_envs, act, runs.EVAL_SEED)
            log_episode(writer, "eval", result, done_steps)
            evaluations.append((done_steps, result))
            if args.capture_video:
                record_video(vars(args), act, runs.EVAL_SEED, f"videos/{run_name}/step_{done_steps}.gif")
            seconds["eval"] += time.perf_counter() - tick

        if args.save_model and runs.checkpoint_due(global_step, done_steps, args):
            runs.save_run(
                run_dir, args, modules, rb, envs, done_steps, evaluations, recent=recent.parts, omega=diagnostics
            )

    print(f"final eval: {describe_episode(result)}")
    print(timing_line(done_steps - start_step, start_time, seconds))
    runs.save_result(run_dir, vars(args), evaluations, seconds, start_time, omega=diagnostics)
    if args.save_model:
        # the buffer is stage 2's data
        runs.save_run(run_dir, args, modules, rb, envs, done_steps, evaluations, recent=recent.parts, omega=diagnostics)
        runs.save_model(run_dir, args, "ctedd_global.py", policy, critics)
        print(f"next, distil: python ctedd_distill.py --global-run {run_dir}")
    runs.end_run(writer, args)
    return result


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except UsageError as err:
        sys.exit(f"error: {err}")
