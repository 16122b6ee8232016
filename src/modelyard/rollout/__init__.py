"""Rollouts: how traffic is split between a model's champion and a candidate version.

``policy`` and ``analysis`` are pure (routing choices, step plans, the statistics that decide a
step); ``state`` keeps rollouts in the store and gives the data plane its routing table.
"""
