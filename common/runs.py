"""Run plumbing shared by the training scripts: checkpoints, resuming, evaluating a saved model.

None of this is the algorithm. A run directory `runs/{run_name}` holds the tensorboard events,
and with `--save-model`: `checkpoint.pt` (every network, optimizer and the RNG, resumable) with
`buffer.npz` (the replay buffer, oldest first) every `--checkpoint-frequency` env steps, and at
the end `{exp_name}.cleanrl_model` (the arguments and the trained networks). Every checkpoint records
the file name of the script that wrote it: another script's is refused, naming it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from common.buffer import ReplayBuffer
from common.engine import evaluate, make_envs
from common.envs import check_task, describe_episode, log_episode, record_video, task_flags, task_of
from common.numerics import numerics
from common.utils import (
    UsageError,
    atomic_write,
    atomic_write_all,
    check_numbers,
    load_checkpoint,
    progress_line,
    save_checkpoint,
)

EVAL_SEED = 10_000  # evaluation episode i starts as mpe2's reset(seed=EVAL_SEED + i)


@dataclass
class RunArgs:
    """The arguments every script's run has besides its algorithm's (CleanRL's first fields); each
    script's `Args` extends it."""

    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = False
    """if toggled, cuda will be used when available"""
    threads: int = 1
    """torch CPU threads (two single-threaded seeds in parallel use two cores best)"""
    track: bool = False
    """if toggled, this experiment will be tracked with Weights and Biases"""
    wandb_project_name: str = "ctedd"
    """the wandb's project name"""
    wandb_entity: str | None = None
    """the entity (team) of wandb's project"""
    capture_video: bool = False
    """whether to save a GIF of the first evaluation episode to `videos/{run_name}`"""
    eval_checkpoint: str | None = None
    """if given, load this model (`runs/{run_name}/*.cleanrl_model`) and only evaluate it (no training)"""
    eval_episodes: int = 100
    """episodes per evaluation, all at once, on the fixed seeds 10_000, 10_001, ... (mpe2's own starts)"""


@dataclass
class TrainArgs(RunArgs):
    """The arguments maddpg.py and ctedd_global.py share besides their algorithm's: the task's variants,
    the batched environments, evaluation and checkpoints."""

    opponents: Literal["learn", "scripted"] = "learn"
    """learn: every agent is trained; scripted: simple_tag's prey / simple_push's adversary are scripted"""
    agent_neighbors: int | None = None
    """partial observation (spread, tag, adversary): each agent sees only its N nearest other agents"""
    landmark_neighbors: int | None = None
    """partial observation (spread, tag, adversary): each agent sees only its N nearest landmarks"""
    num_envs: int = 16
    """environments stepped together by the batched engine (16: see docs/speed.md)"""
    eval_frequency: int = 50_000
    """evaluate the deterministic policies every `eval_frequency` env steps"""
    checkpoint_frequency: int = 0
    """write a resumable checkpoint (networks, optimizers, replay buffer) every N env steps (0: never)"""
    resume: str | None = None
    """a run directory `runs/{run_name}` to continue from its last checkpoint (a larger --total-timesteps extends it,
    and stretches the learning-rate schedule of --lr-final-fraction over the new budget)"""


def check_training(args) -> None:
    """The checks every training script makes first: the numbers' ranges, the task, what saving needs, a
    budget that trains (a resumed run's is checked against its own arguments, in resume_args)."""
    check_numbers(args)
    check_task(args.env_id, args.opponents, args.agent_neighbors, args.landmark_neighbors)
    check_saving(args)
    if not args.resume:
        check_budget(args)


def check_budget(args) -> None:
    """A budget that ends before learning starts trains nothing: refuse it."""
    if args.total_timesteps <= args.learning_starts:
        raise UsageError(
            f"--total-timesteps {args.total_timesteps} ends before learning starts at --learning-starts "
            f"{args.learning_starts}: nothing would be trained"
        )


# the arguments that only one of the scripts has: they tell which script (or a fork of which) saved a checkpoint
OWN_ARGUMENTS = {
    "maddpg.py": ("exploration_noise",),
    "ctedd_global.py": ("alpha", "fixed_sigma"),
    "ctedd_distill.py": ("global_run",),
}


def script_of(Args) -> str:
    """The file name of the script whose arguments `Args` are: as in CleanRL, the default of its exp_name is
    `os.path.basename(__file__)` without ".py" (a fork my_ctedd.py records itself)."""
    return f"{Args.__dataclass_fields__['exp_name'].default}.py"


def kind_of(fields) -> str | None:
    """maddpg.py, ctedd_global.py or ctedd_distill.py: the script that has the arguments named `fields` (for
    a fork, the script it copies); None: none of them."""
    return next((script for script, own in OWN_ARGUMENTS.items() if any(name in fields for name in own)), None)


def check_written_by(checkpoint: dict, path: str, script: str, fields) -> None:
    """Refuse, in one line naming the script that wrote it, a checkpoint of another script than `script`, whose
    arguments are named `fields`. The writer is recorded in the checkpoint, or told by its arguments where it is
    not (checkpoints written before it was); scripts are told apart by kind_of their arguments, so that a fork
    reads the checkpoints of the script it copies."""
    written, kind = kind_of(checkpoint["args"]), kind_of(fields)
    if written is not None and kind is not None and written != kind:
        raise UsageError(f"checkpoint {path} was written by {checkpoint.get('script', written)}, not {script}")


def log_progress(writer, step: int, args, start_step: int, start_time: float, returns: list, stopwatch) -> None:
    """charts/SPS (of this process: a resumed run counts from its start step), perf/{part}_seconds, and
    one progress line on the console."""
    taken = step + args.num_envs - start_step
    writer.add_scalar("charts/SPS", int(taken / (time.time() - start_time)), step)
    for part, value in stopwatch.seconds.items():
        writer.add_scalar(f"perf/{part}_seconds", value, step)
    print(progress_line(step, args.total_timesteps, start_step, start_time, returns, stopwatch.seconds))


def start_run(args, run_dir: str) -> SummaryWriter:
    """Weights and Biases with --track (it syncs the tensorboard scalars), and the tensorboard writer
    of `run_dir` with the hyperparameter table."""
    if args.track:
        import wandb

        wandb.init(
            project=args.wandb_project_name,
            entity=args.wandb_entity,
            sync_tensorboard=True,
            config=vars(args),
            name=os.path.basename(run_dir),
            save_code=True,
        )
    writer = SummaryWriter(run_dir)
    writer.add_text(
        "hyperparameters",
        "|param|value|\n|-|-|\n%s" % ("\n".join([f"|{key}|{value}|" for key, value in vars(args).items()])),
    )
    return writer


def end_run(writer: SummaryWriter, args) -> None:
    """Close the tensorboard writer; with --track let wandb sync the last scalars before the process ends."""
    writer.close()
    if args.track:
        import wandb

        wandb.finish()


def stage1_model(run_dir: str) -> tuple[str, dict, dict]:
    """A finished ctedd_global.py run directory's model: its path, the checkpoint and the settings it was
    trained with (checked: written by this project's scripts)."""
    if not os.path.isdir(run_dir):
        raise UsageError(f"stage-1 run directory {run_dir} does not exist")
    models = sorted(glob.glob(os.path.join(run_dir, "*.cleanrl_model")))
    if len(models) != 1:
        raise UsageError(f"{run_dir} holds {len(models)} *.cleanrl_model files, expected the one of ctedd_global.py")
    checkpoint = load_checkpoint(models[0])
    check_written_by(checkpoint, models[0], "ctedd_global.py", OWN_ARGUMENTS["ctedd_global.py"])
    return models[0], checkpoint, model_settings(checkpoint, models[0])


def model_settings(checkpoint: dict, path: str) -> dict:
    """The settings a model was saved with, checked for the ones that rebuild its task and networks."""
    saved = checkpoint["args"]
    missing = [key for key in ("env_id", "opponents", "hidden_dim") if key not in saved]
    if missing:
        raise UsageError(f"checkpoint {path} lacks {', '.join(missing)}: not written by this project's scripts")
    return saved


def saved_args(checkpoint: dict, Args):
    """The arguments a checkpoint was written with, as the script's Args (unknown keys dropped)."""
    return Args(**{k: v for k, v in checkpoint["args"].items() if k in Args.__dataclass_fields__})


def evaluate_checkpoint(args, Args, make_policy, actor, device: torch.device) -> dict:
    """--eval-checkpoint: evaluate a saved model on `args.eval_episodes` episodes (and record a GIF
    of the first with --capture-video); the checkpoint's task must be the one asked for."""
    checkpoint = load_checkpoint(args.eval_checkpoint)
    check_written_by(checkpoint, args.eval_checkpoint, script_of(Args), Args.__dataclass_fields__)
    saved = saved_args(checkpoint, Args)
    if task_of(vars(saved)) != task_of(vars(args)):
        raise UsageError(
            f"checkpoint {args.eval_checkpoint} was trained on {task_of(vars(saved))}, not {task_of(vars(args))}"
        )
    envs = make_envs(vars(args), args.eval_episodes)
    policy = make_policy(saved, envs).to(device)
    try:
        policy.load_state_dict(checkpoint["policy"])
    except (KeyError, RuntimeError) as err:
        reason = " ".join(str(err).split())  # torch's lists of missing and unexpected keys, on one line
        raise UsageError(f"checkpoint {args.eval_checkpoint} does not fit {envs.task}: {reason}") from err
    act = actor(policy, device)
    result = evaluate(envs, act, EVAL_SEED)
    if args.capture_video:
        record_video(vars(args), act, EVAL_SEED, f"videos/{os.path.basename(args.eval_checkpoint)}-eval.gif")
    print(f"eval over {args.eval_episodes} episodes: {describe_episode(result)}")
    return result


def evaluate_and_log(writer, envs, act, step: int, args, run_name: str) -> dict:
    """The deterministic policies on the evaluation episodes, logged as eval/*; with --capture-video the first
    episode as a GIF in `videos/{run_name}`."""
    result = evaluate(envs, act, EVAL_SEED)
    log_episode(writer, "eval", result, step)
    if args.capture_video:
        record_video(vars(args), act, EVAL_SEED, f"videos/{run_name}/step_{step}.gif")
    return result


def start_or_resume(args, Args) -> tuple[object, dict | None, str]:
    """A new run: (args, no checkpoint, its name {task}__{exp_name}__{seed}__{time}). With --resume DIR:
    that run's arguments with this command's budget, its last checkpoint, and its name."""
    if not args.resume:
        return args, None, f"{task_of(vars(args))}__{args.exp_name}__{args.seed}__{int(time.time())}"
    return (*resume_args(args, Args), os.path.basename(os.path.normpath(args.resume)))


def resume_args(args, Args) -> tuple[object, dict]:
    """--resume DIR: the arguments of that run, with this command's budget, and its last checkpoint."""
    path = os.path.join(args.resume, "checkpoint.pt")
    checkpoint = load_checkpoint(path)
    check_written_by(checkpoint, path, script_of(Args), Args.__dataclass_fields__)
    saved = saved_args(checkpoint, Args)
    if checkpoint["global_step"] >= args.total_timesteps:
        raise UsageError(
            f"{args.resume} is already at env step {checkpoint['global_step']}; "
            f"pass --total-timesteps above it to continue"
        )
    saved.resume, saved.total_timesteps = args.resume, args.total_timesteps
    check_budget(saved)
    return saved, checkpoint


def restore(
    checkpoint: dict, modules: dict, run_dir: str, rb: ReplayBuffer, envs
) -> tuple[int, list, ReplayBuffer, dict]:
    """Continue exactly where `save_run` stopped: the networks and optimizers, every random generator, the
    environments mid-episode and the replay buffer saved with it (into a buffer shaped like `rb`, in its ring
    layout). Returns the env step, the evaluations so far, the buffer and the script's own loop state."""
    if "generators" not in checkpoint:
        raise UsageError(f"{run_dir}/checkpoint.pt holds no environment state: written by an older version")
    for name, module in modules.items():
        try:
            module.load_state_dict(checkpoint[name])
        except (KeyError, RuntimeError, ValueError) as err:  # another script's, or an older layout's
            raise UsageError(
                f"{run_dir}/checkpoint.pt: its {name} does not fit this script: {type(err).__name__}"
            ) from err
    num_agents, _, obs_width = rb.data["obs"].shape
    state_dim, action_dim = rb.data["states"].shape[1], rb.data["actions"].shape[2]
    path = f"{run_dir}/buffer.npz"
    rb = ReplayBuffer.load(path, envs.task, num_agents, obs_width, state_dim, action_dim, rb.capacity, rb.device)
    if rb.num_added != checkpoint["buffer_added"]:  # a crash between the two renames of save_run
        raise UsageError(f"{path} holds {rb.num_added} transitions, its checkpoint.pt {checkpoint['buffer_added']}")
    rb.restore_ring(checkpoint["buffer_pos"])
    generators = json.loads(checkpoint["generators"])
    version, internal, gauss = generators["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = generators["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    rb.rng.bit_generator.state = generators["buffer"]
    torch.set_rng_state(checkpoint["torch_rng"])
    if torch.cuda.is_available() and "cuda_rng" in checkpoint:
        torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
    world = {name: value.numpy() for name, value in checkpoint["envs"].items()}
    envs.set_state({**world, "rng": generators["envs"]})
    print(f"resumed {run_dir} at step {checkpoint['global_step']}")
    return checkpoint["global_step"], json.loads(checkpoint["evaluations"]), rb, checkpoint["loop"]


def check_saving(args) -> None:
    """Periodic checkpoints are written into the run directory with the model: refuse them without it."""
    if args.checkpoint_frequency and not args.save_model:
        raise UsageError("--checkpoint-frequency writes checkpoints with the model: pass --save-model too")
    if args.batch_size > args.buffer_size:
        raise UsageError(f"--batch-size {args.batch_size} is larger than --buffer-size {args.buffer_size}")


def save_run(run_dir: str, args, modules: dict, rb: ReplayBuffer, envs, global_step: int, evaluations: list, **loop):
    """A resumable checkpoint of everything the rest of the run depends on, so that a resumed run equals the
    uninterrupted one: the replay buffer (buffer.npz) and, in checkpoint.pt, the weights and optimizers, every
    random generator (torch's, numpy's and Python's global ones, the buffer's, the environments'), the
    environments mid-episode and the script's own `loop` state (tensors or plain values), and which script wrote it."""
    checkpoint = {name: module.state_dict() for name, module in modules.items()}
    checkpoint.update(args=vars(args), script=script_of(type(args)))
    checkpoint.update(global_step=global_step, torch_rng=torch.get_rng_state())
    if torch.cuda.is_available():
        checkpoint["cuda_rng"] = torch.cuda.get_rng_state_all()
    checkpoint.update(evaluations=json.dumps(evaluations))  # a string: weights_only loading takes plain values
    world = envs.get_state()
    name, keys, position, has_gauss, cached = np.random.get_state()
    generators = dict(python=random.getstate(), numpy=(name, keys.tolist(), position, has_gauss, cached))
    generators.update(buffer=rb.rng.bit_generator.state, envs=world.pop("rng"))
    checkpoint.update(generators=json.dumps(generators), buffer_pos=rb.pos, buffer_added=rb.num_added, loop=loop)
    checkpoint["envs"] = {name: torch.from_numpy(value) for name, value in world.items()}
    # both files or neither: a failing write leaves the previous pair as it was
    buffer = (f"{run_dir}/buffer.npz", rb.writer(task_of(vars(args))))
    atomic_write_all([buffer, (f"{run_dir}/checkpoint.pt", lambda f: torch.save(checkpoint, f))])


def save_model(run_dir: str, args, script: str, policy, critics) -> str:
    """The trained model, `{exp_name}.cleanrl_model`, with the file name of the `script` that wrote it, and the
    command that evaluates it."""
    model_path = f"{run_dir}/{args.exp_name}.cleanrl_model"
    networks = {"policy": policy.state_dict(), "critics": critics.state_dict()}
    save_checkpoint(model_path, {"args": vars(args), "script": script, **networks})
    print(f"model saved to {model_path}; evaluate it with:")
    print(f"  python {script} {task_flags(vars(args))} --eval-checkpoint {model_path}")
    return model_path


def code_version(script: str) -> dict:
    """What a run's code was: its script's file name and a fingerprint (sha256, 12 hex digits) of the script and
    of `common/`, the package every script imports. The grid compares them to tell a kept result made by other
    code (python -m benchmark.run --accept-code-changes)."""
    common = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "*.py")))
    digest = hashlib.sha256()
    for path in common:
        digest.update(os.path.basename(path).encode() + b"\0" + Path(path).read_bytes())
    script_digest = hashlib.sha256(Path(script).read_bytes()).hexdigest()[:12]
    return {
        "script": os.path.basename(script),
        "script_sha256": script_digest,
        "common_sha256": digest.hexdigest()[:12],
    }


# the code of `python SCRIPT` as it was when the run started (the script imports this module first), so that a
# file edited while the run goes on is not mistaken for the code that made it
STARTED = (
    {os.path.abspath(sys.argv[0]): code_version(sys.argv[0])}
    if sys.argv[0].endswith(".py") and os.path.isfile(sys.argv[0])
    else {}
)


def save_result(
    run_dir: str, script: str, settings: dict, evaluations: list, seconds: dict, start_time: float, **extra
) -> dict:
    """result.json, the run in compact form: the evaluation curve (env step, mean return summed over
    the learning agents, per team), the final evaluation with each episode's summed return, where
    the time went, the settings and the code that made it (`script`: the running script's path). The benchmark
    grid (python -m benchmark.run) keeps it under benchmark/results/."""
    step, final = evaluations[-1]
    result = {
        "task": task_of(settings),
        "exp_name": settings["exp_name"],
        "seed": settings["seed"],
        "curve": [[s, e["sum"]] for s, e in evaluations],
        "team_curves": {team: [[s, e["team_returns"][team]] for s, e in evaluations] for team in final["team_returns"]},
        "final": {"step": step, **final},
        "minutes": (time.time() - start_time) / 60,
        "seconds": seconds,
        "args": settings,
        "code": STARTED.get(os.path.abspath(script)) or code_version(script),
        "numerics": numerics(),  # the numerical path that made these numbers (docs/reproducibility.md)
        **extra,
    }
    atomic_write(f"{run_dir}/result.json", lambda f: f.write(json.dumps(result, indent=1).encode()))
    return result
