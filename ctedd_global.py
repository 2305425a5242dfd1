# CTEDD stage 1: global policies on the full state, with centralized training and exploration (arXiv
# 1910.09152, Figure 1 and eq. (1)). Reading guide: README.md, "Reading the code"; docs/stage1.md.
#
# Shapes: N agents, B a batch (replay samples, the environments stepped together, or eq. (1)'s recent
# transitions), S the full state, A an agent's action width (2: its force). Per-agent tensors are agent-major,
# (N, B, ...): what AgentLinear computes on and what the replay buffer returns. The environments are batch-major.
import math
import os
import random
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
import tyro

from common import runs
from common.buffer import RecentBatch, ReplayBuffer
from common.diagnostics import log_omega, omega_diagnostics
from common.engine import BatchedMPE, make_envs
from common.envs import ACTION_DIM, describe_episode, log_episode
from common.layers import AgentLinear, joint_action, own_action_joint
from common.utils import Stopwatch, UsageError, anneal_learning_rates, due, iterations_due, timing_line


@dataclass
class Args(runs.TrainArgs):  # seed, cuda, threads, tracking, video, task variants, evaluation, checkpoints
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    save_model: bool = True
    """whether to save the model and the replay buffer (stage 2 needs both) into `runs/{run_name}`"""

    # Algorithm specific arguments; the learning settings: benchmark.tune's best single setting (docs/tuning.md)
    env_id: str = "simple_push"
    """the MPE environment: simple_push, simple_tag, simple_spread, simple_adversary, simple_speaker_listener
    or simple_reference"""
    total_timesteps: int = 1_000_000
    """total env steps of the experiment, summed over the environments (rounded up to a multiple of num_envs)"""
    learning_rate: float = 0.0064
    """the actors' learning rate (and omega_i's and alpha's)"""
    critic_learning_rate: float = 0.0025
    """the critics' learning rate"""
    buffer_size: int = 1_000_000
    """the replay memory buffer size"""
    gamma: float = 0.95
    """the discount factor gamma"""
    tau: float = 0.0055
    """target smoothing coefficient"""
    batch_size: int = 1600
    """the batch size of samples from the replay memory"""
    learning_starts: int = 25_600
    """env step at which learning starts"""
    train_frequency: int = 59
    """one learning iteration each `train_frequency` env steps; eq. (1)'s B = the transitions in between"""
    max_grad_norm: float = 0.5
    """the maximum gradient norm, over all the parameters of an optimizer"""
    actor_reg: float = 0.0054
    """weight of the squared pre-tanh action penalty (as in the original MADDPG code)"""
    hidden_dim: int = 70
    """width of the two hidden layers of every network (the Q-network's too, unless --critic-hidden-dim)"""

    # Not in the paper: TD3's fixes (Fujimoto et al. 2018), the Q-network's width, a learning-rate schedule
    critic_hidden_dim: int | None = 160
    """width of the Q-network's two hidden layers; None: --hidden-dim"""
    twin_critics: bool = True
    """TD3: twin Q-networks; the TD target takes the smaller target value per agent, both regress to it"""
    target_noise: float = 0.24
    """TD3's target policy smoothing: the std of Gaussian noise on the target actions, clipped (0: none)"""
    policy_delay: int = 2
    """TD3: the actors and the target networks move every D-th learning iteration, eq. (1) and Q every one"""
    lr_final_fraction: float = 0.9
    """every learning rate decays linearly over the run to this fraction of its value (1: constant)"""

    # Not in the paper: our additions to eq. (1) and its ablation (docs/omega.md)
    alpha: float = 0.1
    """the entropy regularization factor of eq. (1): its start value, or with `--target-entropy None` fixed"""
    target_entropy: float | None = -1.07
    """alpha is tuned per agent toward this entropy per action dimension, in nats (-1.07: sigma 0.083), as in SAC;
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
    runs.check_training(args)
    if args.target_entropy is not None and args.alpha <= 0:
        raise UsageError("--target-entropy tunes alpha from its start value: --alpha must be positive")


# ALGO LOGIC: initialize agent here:
def squash_log_std(x: torch.Tensor) -> torch.Tensor:
    return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(x) + 1)


def mlp(in_features: int, hidden: int) -> nn.Sequential:
    """Two hidden ReLU layers of width `hidden`: (..., in) -> (..., hidden)."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())


class GlobalPolicy(nn.Module):
    """The global policies of all N agents on the full state s (the paper's Figure 1): a shared global
    DNN (trunk) and per agent a mean head, mu_i(s) = tanh(head_i(trunk(s))), and a local component
    omega_i, log sigma_i(s) = omega_i(trunk(s)): pi_i(a_i | s) = N(mu_i(s), diag sigma_i(s)^2)."""

    def __init__(self, num_agents: int, state_dim: int, hidden: int):
        super().__init__()
        self.num_agents = num_agents
        self.trunk = mlp(state_dim, hidden)
        self.mean_heads = AgentLinear(num_agents, hidden, ACTION_DIM)
        # paper is silent on omega_i's shape; we use one linear layer per agent on the trunk features
        self.omega = AgentLinear(num_agents, hidden, ACTION_DIM)

    def preactivations(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """state (B, S) -> the means before the tanh and omega_i's output before the squash, (N, B, 2) each.
        Both read the shared trunk's features, omega_i detached: it never moves the trunk."""
        features = self.trunk(state).expand(self.num_agents, *state.shape[:-1], -1)
        return self.mean_heads(features), self.omega(features.detach())

    def forward(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """state (B, S) -> the means mu_i(s) and log sigma_i(s), (N, B, 2) each."""
        mean_preactivation, omega_preactivation = self.preactivations(state)
        return torch.tanh(mean_preactivation), squash_log_std(omega_preactivation)

    def ddpg_parameters(self) -> list[nn.Parameter]:
        return [*self.trunk.parameters(), *self.mean_heads.parameters()]


class CentralizedQ(nn.Module):
    """The centralized Q-network Q(s, a_1..a_N). Paper is silent on mixed tasks (push, tag); we use one network
    with one output per agent, Q_i, which coincide in cooperative tasks. Actions come agent-major, (N, B, A)."""

    def __init__(self, num_agents: int, state_dim: int, hidden: int, twin: bool = False):
        super().__init__()
        self.num_agents = num_agents
        self.net = nn.Sequential(*mlp(state_dim + num_agents * ACTION_DIM, hidden), nn.Linear(hidden, num_agents))
        self.twin = CentralizedQ(num_agents, state_dim, hidden) if twin else None  # not in the paper: TD3's twin

    def forward(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q_i(s, a) of every agent i for one joint action: state (B, S), actions (N, B, A) -> (N, B)."""
        return self.net(torch.cat([state, joint_action(actions)], dim=-1)).T

    def own_action(self, state: torch.Tensor, actions: torch.Tensor, own_actions: torch.Tensor) -> torch.Tensor:
        """Q_i(s, a) where agent i's action is own_actions[i] and the others' are `actions`: (N, B)."""
        joint = own_action_joint(actions, own_actions)
        q = self.net(torch.cat([state.expand(self.num_agents, *state.shape), joint], dim=-1))  # (N, B, N)
        return q.diagonal(dim1=0, dim2=2).T  # Q_i read on agent i's own joint action


def td_target(rewards, terminations, next_q, gamma):
    """y_i = r_i + gamma * (1 - termination) * Q'_i(s', a'). Only a termination stops the bootstrap; MPE's 25-step
    time limit is a truncation, stored as termination = 0. rewards (N, B), terminations (B,), next_q (N, B): (N, B)."""
    return rewards + gamma * (1.0 - terminations) * next_q


def target_policy_smoothing(actions: torch.Tensor, noise_std: float) -> torch.Tensor:
    """TD3 (--target-noise): the target actions plus Gaussian noise of std `noise_std` clipped to [-0.5, 0.5] (TD3's
    c), then clamped to [-1, 1]; with noise_std 0 the actions themselves, no noise drawn. (N, B, A) -> (N, B, A)."""
    if not noise_std:
        return actions
    return (actions + (torch.randn_like(actions) * noise_std).clamp(-0.5, 0.5)).clamp(-1.0, 1.0)


def soft_update(net: nn.Module, target: nn.Module, tau: float) -> None:
    """theta' <- (1 - tau) theta' + tau theta, every parameter in one call."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(net.parameters()), tau)


def omega_loss(log_std, sampled_actions, means, advantage, alpha):
    """eq. (1) as a loss to minimise, per agent i, over the on-policy batch B:
    -( mean_B[ log pi_i(a_i | s) * A_i(s, a) ] + alpha_i * mean_B[ H(pi_i(. | s)) ] ), summed over agents.
    A_i(s, a) = Q_i(s, a) as eq. (1) is written; with --pg-baseline (ours) Q_i(s, a) - Q_i(s, mu(s)), an advantage.
    eq. (1) sums the entropy term over B (the first term is a mean over B); we average it.
    log_std, sampled_actions (as drawn, before clipping), means: (N, B, 2); advantage: (N, B), no gradient.
    Returns the loss, and the policy-gradient and entropy terms per agent."""
    z = (sampled_actions - means) / log_std.exp()
    log_prob = (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)  # of the Gaussian pi_i
    policy_gradient = (log_prob * advantage).mean(1)
    entropy = (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1).mean(1)
    return -(policy_gradient + alpha * entropy).sum(), policy_gradient, entropy


def omega_penalty(preactivation: torch.Tensor, weight: float) -> torch.Tensor:
    """Ours (--omega-reg): weight * mean_B of omega_i's squared pre-squash output, summed over agents. It keeps
    the output off tanh's flat tails, where eq. (1)'s gradient vanishes and Adam drives it ever deeper."""
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


def make_policy(args: Args, envs: BatchedMPE) -> GlobalPolicy:
    return GlobalPolicy(envs.num_agents, envs.state_dim, args.hidden_dim)


def global_actor(policy: GlobalPolicy, device: torch.device):
    def act(obs: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Centralized execution: every agent's action is a function of the full state: (B, S) -> forces (B, N, 2)."""
        with torch.no_grad():
            return policy(torch.from_numpy(state).to(device))[0].transpose(0, 1).cpu().numpy()

    return act


def main(args: Args) -> dict:
    check_args(args)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    if args.eval_checkpoint:
        return runs.evaluate_checkpoint(args, Args, make_policy, global_actor, device)
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

    policy, target_policy = make_policy(args, envs).to(device), make_policy(args, envs).to(device)
    target_policy.load_state_dict(policy.state_dict())
    critic_settings = (args.critic_hidden_dim or args.hidden_dim, args.twin_critics)
    critics = CentralizedQ(num_agents, envs.state_dim, *critic_settings).to(device)
    target_critics = CentralizedQ(num_agents, envs.state_dim, *critic_settings).to(device)
    target_critics.load_state_dict(critics.state_dict())
    q_optimizer = optim.Adam(critics.parameters(), lr=args.critic_learning_rate, fused=True)
    actor_optimizer = optim.Adam(policy.ddpg_parameters(), lr=args.learning_rate, fused=True)
    omega_optimizer = optim.Adam(policy.omega.parameters(), lr=args.learning_rate, fused=True)
    temperature = Temperature(num_agents, args.alpha, args.target_entropy).to(device)
    alpha_optimizer = optim.Adam(temperature.parameters(), lr=args.learning_rate, fused=True)

    # the buffer also records the policy's means mu(s) as they were when it acted (stage 2's --teacher recorded)
    capacity = min(args.buffer_size, args.total_timesteps)
    rb = ReplayBuffer(
        capacity, num_agents, envs.obs_width, envs.state_dim, with_means=True, device=device, seed=args.seed
    )
    modules = dict(policy=policy, target_policy=target_policy, critics=critics, target_critics=target_critics)
    modules.update(q_optimizer=q_optimizer, actor_optimizer=actor_optimizer, omega_optimizer=omega_optimizer)
    modules.update(temperature=temperature, alpha_optimizer=alpha_optimizer)
    recent = RecentBatch()
    diagnostics = []  # research instrumentation: what moves omega_i, every 100 learning iterations (docs/omega.md)
    start_step, curve = 0, []  # the learning curve: (env step, evaluation)
    if checkpoint is not None:
        start_step, curve, rb, loop = runs.restore(checkpoint, modules, run_dir, rb, envs)
        recent.parts, diagnostics = loop["recent"], loop["omega"]
    act = global_actor(policy, device)
    stopwatch, recent_returns = Stopwatch("env", "act", "update", "eval"), []
    actor_loss = torch.tensor(float("nan"))  # logged as NaN until the first actor update (--policy-delay, --resume)
    start_time = time.time()

    # TRY NOT TO MODIFY: start the game
    obs, state = envs.reset(seed=args.seed) if checkpoint is None else envs.observe(envs.view())
    for global_step in range(start_step, args.total_timesteps, args.num_envs):
        # ALGO LOGIC: put action logic here
        with stopwatch("act"), torch.no_grad():
            state_t = torch.from_numpy(state).to(device)
            means, log_std = policy(state_t)
            # a_i ~ pi_i(. | s), the noise independent per agent; sigma_i(s) reads the shared trunk's features of s
            sigma = log_std.exp() if args.fixed_sigma is None else args.fixed_sigma
            samples = means + sigma * torch.randn_like(means)
            recent.add(state_t, samples, means)
            forces = samples.clamp(-1.0, 1.0).transpose(0, 1).cpu().numpy()

        # TRY NOT TO MODIFY: execute the game and log data.
        with stopwatch("env"):
            next_obs, next_state, rewards, terminations, truncations, infos = envs.step(forces)

        # done = termination only: the TD target bootstraps through the 25-step time limit
        rb.add(state, obs, forces, rewards, terminations, next_state, next_obs, means.transpose(0, 1).cpu().numpy())
        obs, state = next_obs, next_state
        if "episode" in infos:  # episodes ended: log them, start new ones there
            log_episode(writer, "charts", infos["episode"], global_step)
            recent_returns = (recent_returns + infos["episode"]["sums"])[-100:]
            obs, state = envs.reset_done()

        # ALGO LOGIC: training, one learning iteration per train_frequency env steps
        steps_taken = global_step + args.num_envs
        anneal_learning_rates(modules.values(), args.lr_final_fraction, steps_taken / args.total_timesteps)
        iterations = iterations_due(global_step, args.num_envs, args.train_frequency, start=args.learning_starts)
        for iteration, (recent_states, recent_samples, recent_means) in zip(iterations, recent.take(len(iterations))):
            with stopwatch("update"):
                data = rb.sample(args.batch_size)
                with torch.no_grad():
                    next_actions = target_policy_smoothing(target_policy(data.next_states)[0], args.target_noise)
                    next_q = target_critics(data.next_states, next_actions)
                    if args.twin_critics:  # not in the paper; TD3: the smaller target critic's value, per agent
                        next_q = torch.min(next_q, target_critics.twin(data.next_states, next_actions))
                    target_q = td_target(data.rewards, data.terminations, next_q, args.gamma)
                q_values = critics(data.states, data.actions)
                qf_loss = F.mse_loss(q_values, target_q) * num_agents  # sum over agents of per-agent MSE
                if args.twin_critics:  # not in the paper; TD3: the twin regresses to the same target
                    qf_loss = qf_loss + F.mse_loss(critics.twin(data.states, data.actions), target_q) * num_agents

                q_optimizer.zero_grad()
                qf_loss.backward()
                nn.utils.clip_grad_norm_(critics.parameters(), args.max_grad_norm)
                q_optimizer.step()

                # eq. (1): max-entropy policy gradient for omega_i on the batch B of the transitions since the last
                # iteration (on-policy), before the trunk moves: sigma_i(s) is that of the policy that drew them
                if args.fixed_sigma is None:
                    alpha = temperature()
                    with torch.no_grad():  # advantage: with --no-pg-baseline Q_i(s, a) itself, as eq. (1) is written
                        advantage = critics(recent_states, recent_samples.clamp(-1.0, 1.0))  # at the executed actions
                        if args.pg_baseline:  # ours: A_i = Q_i(s, a) - Q_i(s, mu(s)), mu as used for sampling
                            advantage = advantage - critics(recent_states, recent_means)
                    _, omega_preactivation = policy.preactivations(recent_states)
                    recent_log_std = squash_log_std(omega_preactivation)
                    eq1_loss, pg, entropy = omega_loss(recent_log_std, recent_samples, recent_means, advantage, alpha)
                    eq1_loss = eq1_loss + omega_penalty(omega_preactivation, args.omega_reg)
                    omega_optimizer.zero_grad()
                    eq1_loss.backward()
                    nn.utils.clip_grad_norm_(policy.omega.parameters(), args.max_grad_norm)
                    omega_optimizer.step()
                    if args.target_entropy is not None:  # ours: alpha_i toward the target entropy, as SAC's
                        alpha_optimizer.zero_grad()
                        temperature.loss(entropy).backward()
                        alpha_optimizer.step()

                if iteration % args.policy_delay == 0:  # not in the paper; TD3: actors and targets every D-th iteration
                    # DDPG update of the trunk and mean heads: agent i ascends Q_i(s, mu(s)) through its own mean
                    # mu_i only; paper is silent on the others' actions: their current means, held fixed
                    preactivation, _ = policy.preactivations(data.states)
                    policy_means = torch.tanh(preactivation)
                    critics.requires_grad_(False)  # the actor loss needs dQ/da only: skip the critics' weight gradients
                    actor_loss = -critics.own_action(data.states, policy_means.detach(), policy_means).mean(1).sum()
                    actor_loss = actor_loss + args.actor_reg * preactivation.pow(2).mean(1).sum()
                    actor_optimizer.zero_grad()
                    actor_loss.backward()
                    critics.requires_grad_(True)
                    nn.utils.clip_grad_norm_(policy.ddpg_parameters(), args.max_grad_norm)
                    actor_optimizer.step()
                    soft_update(policy, target_policy, args.tau)  # update the target networks
                    soft_update(critics, target_critics, args.tau)

        if due(global_step, args.num_envs, 100 * args.train_frequency, start=args.learning_starts):
            writer.add_scalar("losses/qf_values", q_values.mean().item(), global_step)
            writer.add_scalar("losses/qf_loss", qf_loss.item(), global_step)
            writer.add_scalar("losses/actor_loss", actor_loss.item(), global_step)
            if args.fixed_sigma is None:  # eq. (1)'s terms, then research instrumentation (common/diagnostics.py)
                entry = omega_diagnostics(global_step, alpha, recent_log_std, recent_samples, recent_means, advantage)
                diagnostics.append(log_omega(writer, entry, envs.agents, pg, entropy))
            runs.log_progress(writer, global_step, args, start_step, start_time, recent_returns, stopwatch)

        if due(global_step, args.num_envs, args.eval_frequency, offset=-1) or steps_taken >= args.total_timesteps:
            with stopwatch("eval"):
                result = runs.evaluate_and_log(writer, eval_envs, act, steps_taken, args, run_name)
                curve.append((steps_taken, result))

        if due(global_step, args.num_envs, args.checkpoint_frequency, offset=-1) and steps_taken < args.total_timesteps:
            runs.save_run(run_dir, args, modules, rb, envs, steps_taken, curve, recent=recent.parts, omega=diagnostics)

    print(f"final eval: {describe_episode(result)}")
    print(timing_line(steps_taken - start_step, start_time, stopwatch.seconds))
    runs.save_result(run_dir, __file__, vars(args), curve, stopwatch.seconds, start_time, omega=diagnostics)
    if args.save_model:  # the buffer is stage 2's data
        runs.save_run(run_dir, args, modules, rb, envs, steps_taken, curve, recent=recent.parts, omega=diagnostics)
        runs.save_model(run_dir, args, os.path.basename(__file__), policy, critics)
        print(f"next, distil: python ctedd_distill.py --global-run {run_dir}")
    runs.end_run(writer, args)
    return result


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except UsageError as err:
        sys.exit(f"error: {err}")
