"""Rollouts: batched search-while-reasoning generation that records exactly who wrote each token."""
