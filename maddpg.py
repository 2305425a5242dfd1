# MADDPG-k: local policies with a k-bit communication channel, trained directly by MADDPG (Lowe et al.
# 2017), the baseline of CTEDD (arXiv 1910.09152). Reading guide: README.md, "Reading the code".
#
# Shapes: N agents, B a batch (replay samples, or the environments stepped together), S the full state, W the
# (zero-padded) observation width, k message bits, A an agent's action width (its 2-D force; with the reinforced
# channel also its k bits). Per-agent tensors are agent-major, (N, B, ...): what AgentLinear computes on and what
# the replay buffer returns. The environments are batch-major, (B, N, ...).
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
from common.engine import BatchedMPE, make_envs
from common.envs import ACTION_DIM, describe_episode, log_episode
from common.layers import agent_mlp, joint_action, own_action_joint
from common.utils import Stopwatch, UsageError, anneal_learning_rates, due, iterations_due, timing_line


@dataclass
class Args(runs.TrainArgs):  # seed, cuda, threads, tracking, video, task variants, evaluation, checkpoints
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    save_model: bool = False
    """whether to save the model into the `runs/{run_name}` folder"""

    # Algorithm specific arguments; the learning settings: benchmark.tune's best single setting (docs/tuning.md)
    env_id: str = "simple_push"
    """the MPE environment: simple_push, simple_tag, simple_spread, simple_adversary, simple_speaker_listener
    or simple_reference"""
    total_timesteps: int = 1_000_000
    """total env steps of the experiment, summed over the environments (rounded up to a multiple of num_envs)"""
    learning_rate: float = 0.0064
    """the actors' learning rate"""
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
    """one learning iteration each `train_frequency` env steps"""
    max_grad_norm: float = 0.5
    """the maximum gradient norm, over all the parameters of an optimizer"""
    actor_reg: float = 0.0054
    """weight of the squared pre-tanh action penalty (as in the original MADDPG code)"""
    hidden_dim: int = 70
    """width of the two hidden layers of every network (the critics' too, unless --critic-hidden-dim)"""

    # Not in the paper: TD3's fixes (Fujimoto et al. 2018; MATD3), the critics' width, a learning-rate schedule
    critic_hidden_dim: int | None = 160
    """width of the critics' two hidden layers; None: --hidden-dim"""
    twin_critics: bool = True
    """TD3: twin critics per agent; the TD target takes the smaller target value, both regress to it"""
    target_noise: float = 0.24
    """TD3's target policy smoothing: the std of Gaussian noise on the target forces, clipped (0: none)"""
    policy_delay: int = 2
    """TD3: the actors and the target networks move every D-th learning iteration, the critics every one"""
    lr_final_fraction: float = 0.9
    """every learning rate decays linearly over the run to this fraction of its value (1: constant)"""
    exploration_noise: float = 0.29
    """the std of the Gaussian exploration noise added to the forces"""
    message_bits: int = 0
    """k, the bits each agent broadcasts per step (0: plain MADDPG; the paper uses 1 and 3)"""
    message_type: Literal["binary", "continuous"] = "binary"
    """binary: k bits in {-1, +1} (straight-through gradients); continuous: k reals in (-1, 1)"""
    channel: Literal["differentiable", "reinforced"] = "differentiable"
    """how the channel is learned (the paper is silent). differentiable: the receivers' actor losses reach the
    sender's Part 1 through the bits (straight-through, as in DIAL); reinforced: the bits are part of the sender's
    action, as openai/maddpg's communication actions: every critic sees them, the sender's Part 1 ascends its own
    Q_i, and exploration perturbs the bits too"""


def check_args(args: Args) -> None:
    runs.check_training(args)


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


def critic_actions(policy: LocalPolicies, obs: torch.Tensor, reinforced: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Each agent's action as the critics see it, (N, B, A), and the forces' preactivation.
    differentiable: a_i is the force, and the bits agent i heard carry its loss back to the senders' Part 1;
    reinforced: a_i is the force and the message sent; the receivers hear the bits detached, so a
    sender's Part 1 learns only from its own Q_i, through its own message."""
    if not reinforced:
        preactivation = policy.preactivation(obs)
        return preactivation, torch.tanh(preactivation)
    messages = policy.messages(obs)
    preactivation = policy.preactivation(obs, messages.detach())
    return preactivation, torch.cat([torch.tanh(preactivation), messages], dim=-1)


def perturbed_messages(policy: LocalPolicies, obs: torch.Tensor, noise_std: float) -> torch.Tensor:
    """Exploration of the reinforced channel: Gaussian noise on tanh(Part 1's logits), then the channel
    (sign for bits: a bit flips with probability P(noise > |tanh(logit)|); clip for reals)."""
    logits = policy.message_net(obs)
    noisy = torch.tanh(logits) + noise_std * torch.randn_like(logits)
    return torch.where(noisy >= 0, 1.0, -1.0) if policy.message_type == "binary" else noisy.clamp(-1.0, 1.0)


class Critics(nn.Module):
    """Per-agent centralized critics Q_i(o_1..o_N, a_1..a_N), one network each. The joint observation is
    the full state s (every agent's full observation). Actions come agent-major, (N, B, A)."""

    def __init__(self, num_agents: int, state_dim: int, action_dim: int, hidden: int, twin: bool = False):
        super().__init__()
        self.num_agents = num_agents
        self.net = agent_mlp(num_agents, state_dim + num_agents * action_dim, hidden, 1)
        self.twin = Critics(num_agents, state_dim, action_dim, hidden) if twin else None  # not in the paper: TD3's twin

    def forward(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q_i(s, a) of every agent i for one joint action: state (B, S), actions (N, B, A) -> (N, B)."""
        x = torch.cat([state, joint_action(actions)], dim=-1)
        return self.net(x.expand(self.num_agents, *x.shape)).squeeze(-1)

    def own_action(self, state: torch.Tensor, actions: torch.Tensor, own_actions: torch.Tensor) -> torch.Tensor:
        """Q_i(s, a) where agent i's action is own_actions[i] and the others' are `actions`: (N, B)."""
        joint = own_action_joint(actions, own_actions)
        return self.net(torch.cat([state.expand(self.num_agents, *state.shape), joint], dim=-1)).squeeze(-1)


def td_target(rewards, terminations, next_q, gamma):
    """y_i = r_i + gamma * (1 - termination) * Q'_i(s', a'). Only a termination stops the bootstrap; MPE's 25-step
    time limit is a truncation, stored as termination = 0. rewards (N, B), terminations (B,), next_q (N, B): (N, B)."""
    return rewards + gamma * (1.0 - terminations) * next_q


def target_policy_smoothing(actions: torch.Tensor, noise_std: float) -> torch.Tensor:
    """TD3 (--target-noise): the target forces plus Gaussian noise of std `noise_std` clipped to [-0.5, 0.5] (TD3's
    c), then clamped to [-1, 1]; the reinforced channel's bits as they are; with noise_std 0 the actions themselves,
    no noise drawn. (N, B, A) -> (N, B, A)."""
    if not noise_std:
        return actions
    forces = actions[..., :ACTION_DIM]
    forces = (forces + (torch.randn_like(forces) * noise_std).clamp(-0.5, 0.5)).clamp(-1.0, 1.0)
    return torch.cat([forces, actions[..., ACTION_DIM:]], dim=-1)


def soft_update(net: nn.Module, target: nn.Module, tau: float) -> None:
    """theta' <- (1 - tau) theta' + tau theta, every parameter in one call."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(net.parameters()), tau)


def make_policy(args: Args, envs: BatchedMPE) -> LocalPolicies:
    return LocalPolicies(envs.num_agents, envs.obs_width, args.hidden_dim, args.message_bits, args.message_type)


def local_actor(policy: LocalPolicies, device: torch.device):
    def act(obs: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Decentralized execution: each agent reads its own observation (and the bits it hears).
        obs (B, N, W) -> forces (B, N, 2)."""
        with torch.no_grad():
            return policy(torch.from_numpy(obs).to(device).transpose(0, 1)).transpose(0, 1).cpu().numpy()

    return act


def main(args: Args) -> dict:
    check_args(args)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    if args.eval_checkpoint:
        return runs.evaluate_checkpoint(args, Args, make_policy, local_actor, device)
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
    # paper is silent on how MADDPG-k learns its channel; see --channel
    reinforced = args.channel == "reinforced" and args.message_bits > 0
    action_dim = ACTION_DIM + (args.message_bits if reinforced else 0)
    critic_settings = (args.critic_hidden_dim or args.hidden_dim, args.twin_critics)
    critics = Critics(num_agents, envs.state_dim, action_dim, *critic_settings).to(device)
    target_critics = Critics(num_agents, envs.state_dim, action_dim, *critic_settings).to(device)
    target_critics.load_state_dict(critics.state_dict())
    q_optimizer = optim.Adam(critics.parameters(), lr=args.critic_learning_rate, fused=True)
    actor_optimizer = optim.Adam(policy.parameters(), lr=args.learning_rate, fused=True)

    capacity = min(args.buffer_size, args.total_timesteps)
    rb = ReplayBuffer(capacity, num_agents, envs.obs_width, envs.state_dim, action_dim, device=device, seed=args.seed)
    modules = dict(policy=policy, target_policy=target_policy, critics=critics, target_critics=target_critics)
    modules.update(q_optimizer=q_optimizer, actor_optimizer=actor_optimizer)
    start_step, curve = 0, []  # the learning curve: (env step, evaluation)
    if checkpoint is not None:
        start_step, curve, rb, _ = runs.restore(checkpoint, modules, run_dir, rb, envs)
    act = local_actor(policy, device)
    stopwatch, recent_returns = Stopwatch("env", "act", "update", "eval"), []
    actor_loss = torch.tensor(float("nan"))  # logged as NaN until the first actor update (--policy-delay, --resume)
    start_time = time.time()

    # TRY NOT TO MODIFY: start the game
    obs, state = envs.reset(seed=args.seed) if checkpoint is None else envs.observe(envs.view())
    for global_step in range(start_step, args.total_timesteps, args.num_envs):
        # ALGO LOGIC: put action logic here
        with stopwatch("act"), torch.no_grad():
            obs_t = torch.from_numpy(obs).to(device).transpose(0, 1)
            # in the reinforced channel the bits are actions too, explored like the forces
            messages = perturbed_messages(policy, obs_t, args.exploration_noise) if reinforced else None
            forces = torch.tanh(policy.preactivation(obs_t, messages))
            forces = (forces + args.exploration_noise * torch.randn_like(forces)).clamp(-1.0, 1.0)
            actions = torch.cat([forces, messages], dim=-1) if reinforced else forces
            actions = actions.transpose(0, 1).cpu().numpy()

        # TRY NOT TO MODIFY: execute the game and log data.
        with stopwatch("env"):
            next_obs, next_state, rewards, terminations, truncations, infos = envs.step(actions[..., :ACTION_DIM])

        # done = termination only: the TD target bootstraps through the 25-step time limit
        rb.add(state, obs, actions, rewards, terminations, next_state, next_obs)
        obs, state = next_obs, next_state
        if "episode" in infos:  # episodes ended: log them, start new ones there
            log_episode(writer, "charts", infos["episode"], global_step)
            recent_returns = (recent_returns + infos["episode"]["sums"])[-100:]
            obs, state = envs.reset_done()

        # ALGO LOGIC: training, one learning iteration per train_frequency env steps
        steps_taken = global_step + args.num_envs
        anneal_learning_rates(modules.values(), args.lr_final_fraction, steps_taken / args.total_timesteps)
        iterations = iterations_due(global_step, args.num_envs, args.train_frequency, start=args.learning_starts)
        for iteration in iterations:
            with stopwatch("update"):
                data = rb.sample(args.batch_size)
                with torch.no_grad():
                    _, next_actions = critic_actions(target_policy, data.next_obs, reinforced)
                    next_actions = target_policy_smoothing(next_actions, args.target_noise)
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

                if iteration % args.policy_delay == 0:  # not in the paper; TD3: actors and targets every D-th iteration
                    # DDPG actor update for every agent: agent i ascends Q_i through its own action only; the
                    # others' actions come from the buffer (as in openai/maddpg)
                    preactivation, policy_actions = critic_actions(policy, data.obs, reinforced)
                    critics.requires_grad_(False)  # the actor loss needs dQ/da only: skip the critics' weight gradients
                    actor_loss = -critics.own_action(data.states, data.actions, policy_actions).mean(1).sum()
                    actor_loss = actor_loss + args.actor_reg * preactivation.pow(2).mean(1).sum()
                    actor_optimizer.zero_grad()
                    actor_loss.backward()
                    critics.requires_grad_(True)
                    nn.utils.clip_grad_norm_(policy.parameters(), args.max_grad_norm)
                    actor_optimizer.step()
                    soft_update(policy, target_policy, args.tau)  # update the target networks
                    soft_update(critics, target_critics, args.tau)

        if due(global_step, args.num_envs, 100 * args.train_frequency, start=args.learning_starts):
            writer.add_scalar("losses/qf_values", q_values.mean().item(), global_step)
            writer.add_scalar("losses/qf_loss", qf_loss.item(), global_step)
            writer.add_scalar("losses/actor_loss", actor_loss.item(), global_step)
            runs.log_progress(writer, global_step, args, start_step, start_time, recent_returns, stopwatch)

        if due(global_step, args.num_envs, args.eval_frequency, offset=-1) or steps_taken >= args.total_timesteps:
            with stopwatch("eval"):
                result = runs.evaluate_and_log(writer, eval_envs, act, steps_taken, args, run_name)
                curve.append((steps_taken, result))

        if due(global_step, args.num_envs, args.checkpoint_frequency, offset=-1) and steps_taken < args.total_timesteps:
            runs.save_run(run_dir, args, modules, rb, envs, steps_taken, curve)

    print(f"final eval: {describe_episode(result)}")
    print(timing_line(steps_taken - start_step, start_time, stopwatch.seconds))
    runs.save_result(run_dir, __file__, vars(args), curve, stopwatch.seconds, start_time)
    if args.save_model:
        if args.checkpoint_frequency:
            runs.save_run(run_dir, args, modules, rb, envs, steps_taken, curve)
        runs.save_model(run_dir, args, os.path.basename(__file__), policy, critics)
    runs.end_run(writer, args)
    return result


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except UsageError as err:
        sys.exit(f"error: {err}")
