"""The demo: RL teaches a small instruct model to search, end to end, on a laptop CPU."""
