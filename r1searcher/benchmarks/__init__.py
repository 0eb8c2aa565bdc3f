"""Benchmarks behind ``r1searcher bench NAME``: one module each, discovered by name.

Each module defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``. Every figure is a
ratio against a baseline measured in the same run (machines here are noisy), printed with the
machine it ran on (``machine_info()``). Results go into BENCHMARKS.md with the command.
"""

from __future__ import annotations

import os
import platform


def machine_info() -> dict:
    """CPU model, cores, torch's CPU capability and version: print beside every timing."""
    info = {"machine": platform.machine(), "cores": os.cpu_count(), "cpu": platform.processor() or "?"}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # torch missing is fine for retrieval-only benches
        pass
    return info
