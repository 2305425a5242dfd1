"""The benchmark: the comparison grid and its report, run from the repository root as modules.

    python -m benchmark.run ...                # the grid of (arm, task, seed), local or Ray (benchmark.ray_grid)
    python -m benchmark.report --figures docs  # the tables and figures from benchmark/results/
    python -m benchmark.tune ...               # the same tuning budget for every method
    python -m benchmark.reference_returns ...  # the hand-written controllers that anchor the normalised score

`benchmark.grid` holds what both backends share (jobs, skipping finished runs, keeping results).
`benchmark.analysis` holds the studies written for one issue each (python -m benchmark.analysis.hedge, ...).
"""
