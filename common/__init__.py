"""Shared, non-algorithmic parts: the MPE environment layer, the replay buffer, file helpers."""
