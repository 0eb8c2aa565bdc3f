"""The machine line of benchmarks and the demo report, read from a /proc/cpuinfo text."""

from r1searcher.models.loading import cpu_has_fast_bf16
from r1searcher.util.machine import cpu_flags, describe

AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n"
BF16 = "processor\t: 0\nflags\t\t: avx2 fma avx512f avx512bw avx512_bf16\n"
AMX = "processor\t: 0\nflags\t\t: avx2 fma avx512f amx_bf16 amx_tile amx_int8\n"


def test_speed_flags_are_read_in_a_fixed_order_and_decide_bf16():
    assert cpu_flags(AVX2) == ["avx2", "fma"] and not cpu_has_fast_bf16(AVX2)
    assert cpu_flags(BF16) == ["avx2", "fma", "avx512f", "avx512_bf16"] and cpu_has_fast_bf16(BF16)
    assert cpu_flags(AMX) == ["avx2", "fma", "avx512f", "amx_bf16", "amx_tile"] and cpu_has_fast_bf16(AMX)
    assert cpu_flags("no flags here") == [] and not cpu_has_fast_bf16("")


def test_describe_names_cpu_flags_capability_and_gpu():
    line = describe({"cpu": "AMD EPYC 7B13", "cores": 2, "cpu_flags": ["avx2", "fma"], "torch_cpu_capability": "AVX2",
                     "threads": 2})
    assert line == "AMD EPYC 7B13, 2 cores (avx2 fma), torch CPU capability AVX2, 2 threads"
    assert describe({"cpu": "x", "cores": 1, "gpu": "NVIDIA H100"}).endswith("GPU NVIDIA H100")
    assert "(no AVX2)" in describe({"cpu": "old", "cores": 1, "cpu_flags": []})
