"""Where one learning iteration's time goes: each script's real training loop under torch.profiler.

Runs `main` of maddpg.py (k = 0 and k = 3) and ctedd_global.py for a short run (learning from env
step 4096 on, `--iterations` learning iterations profiled after a warm-up) in a subprocess each, and
splits every learning iteration (from the buffer sample to the end of the soft update) by kind of work:

- marked calls, their whole wall time with the Python in them: the buffer's sample (numpy gather and
  the copy to tensors), Adam's step and zero_grad, the gradient clipping, the soft update;
- outside them, the operators' own (self) time by kind: matrix products (forward and backward),
  copies and allocations (copy, clone, cat, index, expand, empty, ...), the autograd engine's bookkeeping, the other
  element-wise ops and reductions;
- the rest, Python and dispatch between operators: the iteration's wall time minus all of the above.

The iteration's wall time is measured twice, without the profiler (the `ms` column; the profiler
itself adds per-op cost) and with it (the split). Next to it: the FLOPs of the matrix products per
iteration, the GFLOP/s that makes over the whole iteration, and the rate of a (1024 x 64) @ (64 x 64)
matmul measured in the same process. The scripts are not changed: the marks are wrappers put around
`ReplayBuffer.sample`, `torch.nn.utils.clip_grad_norm_`, the script's `soft_update` and
`multiples_in` (the loop's checks around the updates), which the loop calls by name.

    python -m benchmark.analysis.profile_update                        # this checkout, env simple_spread
    python -m benchmark.analysis.profile_update --compare /tmp/old     # side by side with another checkout
    python -m benchmark.analysis.profile_update --json out.json        # also keep the numbers
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {  # label: (script, extra arguments)
    "MADDPG-0": ("maddpg.py", []),
    "MADDPG-3": ("maddpg.py", ["--message-bits", "3"]),
    "CTEDD-G": ("ctedd_global.py", ["--no-save-model"]),
}
MARKED = ("sample", "optimizer", "clip", "soft update")
OP_KINDS = ("matmul", "copies", "autograd", "other ops")
KINDS = (*MARKED, *OP_KINDS, "python")
MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}
COPIES = {
    "aten::copy_",
    "aten::clone",
    "aten::cat",
    "aten::index",
    "aten::index_select",
    "aten::gather",
    "aten::contiguous",
    "aten::_to_copy",
    "aten::stack",
    "aten::expand",
    "aten::empty",
    "aten::empty_strided",
    "aten::empty_like",
    "aten::zeros",
    "aten::zeros_like",
}
LEARNING_STARTS = 4096


def matmul_gflops(repeats: int = 2000) -> float:
    """The rate of one (1024 x 64) @ (64 x 64) matmul, best of five timings of `repeats` products."""
    import torch

    a, b = torch.randn(1024, 64), torch.randn(64, 64)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * 1024 * 64 * 64 / best / 1e9


def kind_of(event) -> str | None:
    """The kind of an operator outside the marked calls, None for a profiler-internal event."""
    name = event.name
    if name in MATMULS:
        return "matmul"
    if name in COPIES:
        return "copies"
    if name.startswith("autograd::") or name.endswith("Backward0") or name.endswith("Backward1") or "::" not in name:
        return "autograd"
    return "other ops" if name.startswith("aten::") else None


def marked_kind(event) -> str | None:
    name = event.name
    if name.startswith("Optimizer."):  # torch.optim's own marks: Optimizer.step#Adam.step, ...zero_grad
        return "optimizer"
    return name if name in MARKED else None


def under_a_mark(event) -> bool:
    parent = event.cpu_parent
    while parent is not None and not marked_kind(parent):
        parent = parent.cpu_parent
    return parent is not None


def iterations_of(marks: list[tuple[str, float, float]]) -> list[tuple[float, float]]:
    """Each learning iteration's (start, end) from the loop's marks (kind, start, end) in time order: an
    iteration begins at its sample (the first of a loop step: where the check before it ends, so that
    the loop's own work before the sample counts) and ends where the next sample or check begins."""
    spans = []
    for index, (kind, start, _) in enumerate(marks[:-1]):
        if kind == "sample":
            previous = marks[index - 1] if index else None
            begin = previous[2] if previous is not None and previous[0] == "check" else start
            spans.append((begin, marks[index + 1][1]))
    return spans


def worker(
    script: str, extra: list[str], iterations: int, warmup: int, env_id: str, times_only: bool, root: Path
) -> dict:
    """The script of checkout `root`: run its main without the profiler (the times), then unless
    `times_only` twice with it (the split, the FLOPs), and cut out its learning iterations. The script
    imports `common` from sys.path: `root` must be on it (run_worker puts it on PYTHONPATH)."""
    import torch

    spec = importlib.util.spec_from_file_location("profiled_script", root / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from common.buffer import ReplayBuffer

    patched = [(module, "multiples_in"), (module, "soft_update"), (ReplayBuffer, "sample")]
    patched.append((torch.nn.utils, "clip_grad_norm_"))
    originals = [(owner, name, getattr(owner, name)) for owner, name in patched]
    cwd = os.getcwd()
    try:
        return profiled(module, ReplayBuffer, extra, iterations, warmup, env_id, times_only)
    finally:  # the wrappers go, so that nothing else in this process is marked
        for owner, name, original in originals:
            setattr(owner, name, original)
        os.chdir(cwd)


def profiled(module, ReplayBuffer, extra, iterations, warmup, env_id, times_only) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    marks: list = []  # (kind, start, end) of the loop's checks and samples, perf_counter seconds

    def marked(name, fn, mark=None):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            with record_function(name):
                result = fn(*args, **kwargs)
            if mark:
                marks.append((mark, start, time.perf_counter()))
            return result

        return wrapper

    module.multiples_in = marked("check", module.multiples_in, "check")
    module.soft_update = marked("soft update", module.soft_update)
    ReplayBuffer.sample = marked("sample", ReplayBuffer.sample, "sample")
    torch.nn.utils.clip_grad_norm_ = marked("clip", torch.nn.utils.clip_grad_norm_)

    steps = LEARNING_STARTS + (warmup + iterations) * 100
    argv = ["--env-id", env_id, "--total-timesteps", str(steps), "--learning-starts", str(LEARNING_STARTS)]
    argv += ["--eval-frequency", str(10 * steps), "--eval-episodes", "10", *extra]
    argv += ["--train-frequency", "100", "--batch-size", "1024"]  # the update docs/speed.md measured, at any defaults
    args = module.tyro.cli(module.Args, args=argv)
    os.chdir(tempfile.mkdtemp(prefix="profile_update_"))  # the run's runs/ folder

    def spans() -> list[tuple[float, float]]:
        return iterations_of(marks)[warmup:]

    with contextlib.redirect_stdout(sys.stderr):
        module.main(args)
    plain = [end - start for start, end in spans()]
    if times_only:
        return {"iterations": len(plain), "ms": 1e3 * statistics.median(plain)}
    # two profiled runs: one for the times, one for the FLOPs. With with_flops on, new tensors come from
    # fresh pages (here 380 page faults per relu(baddbmm) step against 5 without it) and the element-wise
    # operators run several times slower, so its times are not kept
    profiles = []
    for with_flops in (False, True):
        marks.clear()
        with contextlib.redirect_stdout(sys.stderr):
            with profile(activities=[ProfilerActivity.CPU], with_flops=with_flops) as prof:
                module.main(args)
        profiles.append((prof.events(), spans(), [start for kind, start, _ in marks if kind == "sample"]))
    timed = split_iterations(*profiles[0])
    counted = split_iterations(*profiles[1])
    return {
        "iterations": len(plain),
        "ms": 1e3 * statistics.median(plain),
        "profiled_ms": timed["wall_ms"],
        "split_ms": timed["split_ms"],
        "operators": timed["operators"],
        "top": timed["top"],
        "mflop": counted["mflop"],
        "matmul_gflops": matmul_gflops(),
    }


def split_iterations(events, spans: list, sample_marks: list) -> dict:
    """Split the profiled learning iterations (perf_counter spans) by kind: per iteration, the wall time,
    ms per kind, the operators dispatched, the FLOPs of the matrix products, the costliest operators."""
    # the profiler's clock (us from its start) against perf_counter: align on the marked samples
    samples = sorted(e.time_range.start for e in events if e.name == "sample")
    offset = statistics.median(s - 1e6 * m for s, m in zip(samples, sample_marks))
    windows = [(1e6 * start + offset, 1e6 * end + offset) for start, end in spans]
    split = {kind: 0.0 for kind in KINDS}
    flops, operators, walls = 0.0, 0, []
    by_name: dict = {}  # operator name: [calls, self time], outside the marked calls
    events = sorted(events, key=lambda e: e.time_range.start)
    cursor = 0
    for low, high in windows:
        walls.append(high - low)
        covered = 0.0
        while cursor < len(events) and events[cursor].time_range.start < low:
            cursor += 1
        index = cursor
        while index < len(events) and events[index].time_range.start < high:
            event = events[index]
            index += 1
            parent = event.cpu_parent
            operators += event.name.startswith("aten::") and not (parent and parent.name.startswith("aten::"))
            flops += event.flops if event.name in MATMULS else 0
            if under_a_mark(event):  # counted in its marked call's wall time
                continue
            kind = marked_kind(event)
            if kind:
                time_spent = event.time_range.end - event.time_range.start
            else:
                kind, time_spent = kind_of(event), event.self_cpu_time_total
            if kind:
                split[kind] += time_spent
                covered += time_spent
                calls = by_name.setdefault(event.name, [0, 0.0])
                calls[0], calls[1] = calls[0] + 1, calls[1] + time_spent
        split["python"] += (high - low) - covered
    count = len(windows)
    top = sorted(([name, n / count, 1e-3 * t / count] for name, (n, t) in by_name.items()), key=lambda x: -x[2])
    return {
        "wall_ms": 1e-3 * statistics.median(walls),
        "split_ms": {kind: 1e-3 * value / count for kind, value in split.items()},
        "operators": operators / count,
        "mflop": flops / count / 1e6,
        "top": top[:15],
    }


def run_worker(tree: Path, label: str, args) -> dict:
    script, extra = CONFIGS[label]
    # this file as a script, in `tree` with `tree` on the path: the script and `common` are that checkout's
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", label]
    command += ["--iterations", str(args.iterations), "--warmup", str(args.warmup), "--env-id", args.env_id]
    command += ["--times-only"] if args.times_only else []
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: profiling {label} in {tree} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: dict) -> str:
    """Markdown: per checkout and configuration the iteration's ms, its split, FLOPs and rates."""
    lines = [
        "| checkout | script | ms | ops | profiled ms | " + " | ".join(KINDS) + " | MFLOP | GFLOP/s | matmul GFLOP/s |",
        "|---|---|---|---|---|" + "---|" * len(KINDS) + "---|---|---|",
    ]
    for tree, by_label in results.items():
        for label, r in by_label.items():
            if "split_ms" not in r:
                lines.append(f"| {tree} | {label} | {r['ms']:.2f} |")
                continue
            split = " | ".join(f"{r['split_ms'][kind]:.2f}" for kind in KINDS)
            rate = r["mflop"] / r["ms"]  # MFLOP per ms = GFLOP/s
            lines.append(
                f"| {tree} | {label} | {r['ms']:.2f} | {r['operators']:.0f} | {r['profiled_ms']:.2f} | {split} "
                f"| {r['mflop']:.0f} | {rate:.0f} "
                f"| {r['matmul_gflops']:.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--env-id", default="simple_spread")
    parser.add_argument("--iterations", type=int, default=200, help="learning iterations profiled per run")
    parser.add_argument("--warmup", type=int, default=20, help="learning iterations before those")
    parser.add_argument("--repeats", type=int, default=1, help="runs per checkout and configuration (the fastest kept)")
    parser.add_argument("--compare", type=Path, help="another checkout, profiled alternately with this one")
    parser.add_argument("--times-only", action="store_true", help="only the ms per iteration, no profiler")
    parser.add_argument("--top", action="store_true", help="also list the most expensive operators")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.iterations <= 0 or args.warmup < 0 or args.repeats <= 0:
        sys.exit("error: --iterations and --repeats must be positive, --warmup not negative")
    if args.worker:
        script, extra = CONFIGS[args.worker]
        result = worker(script, extra, args.iterations, args.warmup, args.env_id, args.times_only, Path.cwd())
        print(json.dumps(result))
        return
    trees = {"this": ROOT}
    if args.compare:
        if not (args.compare / "maddpg.py").is_file():
            sys.exit(f"error: --compare {args.compare} is not a checkout of this project (no maddpg.py)")
        trees = {str(args.compare): args.compare.resolve(), "this": ROOT}
    runs = {name: {label: [] for label in args.configs} for name in trees}
    for _ in range(args.repeats):
        for label in args.configs:
            for name, tree in trees.items():  # alternately, so that a busy moment hits both
                runs[name][label].append(run_worker(tree, label, args))
    results = {
        name: {label: min(rs, key=lambda r: r["ms"]) for label, rs in by_label.items()}
        for name, by_label in runs.items()
    }
    print(f"one learning iteration on {args.env_id}: ms without the profiler (median of {args.iterations}),")
    print("operators dispatched, and the split in ms under the profiler (it adds a cost per operator)")
    print(table(results))
    if args.top:
        for name, by_label in results.items():
            for label, r in by_label.items():
                print(f"\n{name} {label}: the most expensive operators and marked calls per iteration")
                print("| operator | calls | ms |\n|---|---|---|")
                print("\n".join(f"| {op} | {n:.1f} | {ms:.3f} |" for op, n, ms in r["top"]))
    if args.compare:
        for label in args.configs:
            old, new = results[str(args.compare)][label]["ms"], results["this"][label]["ms"]
            print(f"{label}: {old:.2f} ms -> {new:.2f} ms, {old / new:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"env_id": args.env_id, "results": results}, indent=1))


if __name__ == "__main__":
    main()
