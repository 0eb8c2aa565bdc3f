"""Evaluation: methods (the trained loop and fair baselines), metrics, the LLM judge, difficulty selection."""
