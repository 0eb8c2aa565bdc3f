"""The machine a measurement ran on: CPU model, cores, the instruction sets that decide speed and
dtype, torch's CPU capability and threads, and the GPU when there is one. Printed beside every
timing (benchmarks) and written into the demo's report and metrics.json."""

from __future__ import annotations

import os
import platform

#: CPU flags that decide how fast a matmul runs here (and whether ``dtype=auto`` picks bf16).
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The :data:`SPEED_FLAGS` this CPU has (the first processor's ``flags`` line of /proc/cpuinfo)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read(1 << 16)
        except OSError:
            return []
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return [f for f in SPEED_FLAGS if f in have]
    return []


def machine_info() -> dict:
    """CPU model, cores, speed flags, torch's CPU capability, version and threads (and the GPU)."""
    info = {"machine": platform.machine(), "cores": os.cpu_count(), "cpu": platform.processor() or "?"}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["cpu_flags"] = cpu_flags()
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


def describe(info: dict) -> str:
    """One line for a report: ``AMD EPYC 7B13, 2 cores (avx2 fma), torch CPU capability AVX2, 2 threads``."""
    flags = " ".join(info.get("cpu_flags") or []) or "no AVX2"
    parts = [f"{info.get('cpu', '?')}, {info.get('cores', '?')} cores ({flags})"]
    if "torch_cpu_capability" in info:
        parts.append(f"torch CPU capability {info['torch_cpu_capability']}, {info.get('threads', '?')} threads")
    if info.get("gpu"):
        parts.append(f"GPU {info['gpu']}")
    return ", ".join(parts)
