"""Measure this machine's fp32 matrix-multiply peak (GFLOP/s), the yardstick for
the DiT's achieved GFLOP/s in benchmarks/train_throughput.py.

    python benchmarks/matmul_peak.py --size 1024 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def matmul_gflops(size: int, repeats: int) -> float:
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps({"size": args.size, "threads": args.threads, "gflops": round(matmul_gflops(args.size, args.repeats), 1)}))


if __name__ == "__main__":
    main()
