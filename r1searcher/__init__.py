"""r1searcher: teach language models to search while they reason, by RL on outcome rewards."""

__version__ = "0.1.0"
