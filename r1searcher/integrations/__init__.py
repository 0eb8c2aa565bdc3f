"""Adapters that plug r1searcher's rollout engine and rewards into other training libraries.

``trl``: a ``rollout_func`` and reward functions for TRL's ``GRPOTrainer`` (``pip install trl``).
Nothing here is imported by the rest of the package, so the adapters' libraries stay optional.
"""
