"""Analyses written for one issue each, on saved runs and kept results: python -m benchmark.analysis.NAME.

channel_probe (the channel over training), env_throughput (env steps per second), hedge (issue #22),
messages (what the bits say), omega_probe and sigma (issue #14), profile_update (docs/speed.md).
"""
