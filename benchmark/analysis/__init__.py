"""The tools that regenerate a docs page from saved runs and kept results: python -m benchmark.analysis.NAME.

env_throughput (env steps per second, docs/engine.md), messages (what the bits say, docs/results.md and the
reports' messages.json), sigma (what omega_i learns, docs/omega.md's figures). The finished one-off studies
(channel_probe, hedge, omega_probe, profile_update, speed_ideas) were removed after commit ae5eba9, where
they can still be read: git show ae5eba9:benchmark/analysis/NAME.py.
"""
