"""Benchmarks behind ``r1searcher bench NAME``: one module each, discovered by name.

Each module defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``. Every figure is a
ratio against a baseline measured in the same run (machines here are noisy), printed with the
machine it ran on (``machine_info()``). Results go into BENCHMARKS.md with the command.
"""

from __future__ import annotations

from r1searcher.util.machine import machine_info

__all__ = ["machine_info"]
