"""Which compute precision a training stage runs in.

Why "auto": bf16 autocast is 2-4x faster than fp32 on a CPU that does bf16
natively (AVX512-BF16 or AMX), and many times slower on one that does not,
where PyTorch emulates it: on a 2-core AVX2-only AMD EPYC VM the built-in DiT's
training step ran at 1.0 samples/s in bf16 against 15.7 in fp32
(docs/benchmarks.md, "Training throughput"). A recipe that names "auto" runs as
fast as the machine allows on either kind of CPU.
"""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles), as PyTorch sees it."""
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(bool(check()) for check in checks if check is not None)


def resolve_precision(precision: str) -> str:
    """"fp32" or "bf16": "auto" becomes bf16 where the CPU does it natively, else fp32; the others stay."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_cpu_bf16() else "fp32"
    return precision
