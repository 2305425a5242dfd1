"""The benchmark: the comparison grid and its report, run from the repository root as modules.

    python -m benchmark.run ...                # the grid of (arm, task, seed), local or Ray (benchmark.ray_grid)
    python -m benchmark.report --results-dir benchmark/results/v3   # the tables (and --figures) of a results tree
    python -m benchmark.tune ...               # the same tuning budget for every method
    python -m benchmark.reference_returns ...  # the hand-written controllers that anchor the normalised score

`benchmark.grid` holds what both backends share (jobs, skipping finished runs, keeping results).
`benchmark.analysis` holds the tools that regenerate a docs page (messages, sigma, env_throughput).
benchmark/results/ keeps one folder per benchmark version (v2/, v3/) and one per study: its README.md
says what each holds. Your own runs go to benchmark/results/local/ by default.
"""
