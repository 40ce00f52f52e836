"""The same-sitting machinery that `accelbench ab` (two sides) and a run's races (every configuration of a group)
share: the worker channel (channel), the rounds under one time cap (rounds), how the sides take turns (methods).
"""
