"""End-to-end throughput of ``ccjax.sample``: noise, presses, mechanisms, pairs.

Compile time is reported apart from steady state. Run from the repository
root: ``python bench/bench_sample.py [--n 1000000]``; add ``--x64`` for
float64.
"""

from __future__ import annotations

import argparse
import time

import jax
from _common import record, timeit

import ccjax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="pairs per call")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions")
    parser.add_argument("--x64", action="store_true", help="sample in float64")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", args.x64)
    precision = "f64" if args.x64 else "f32"

    sample = jax.jit(ccjax.sample, static_argnums=1)
    key = jax.random.key(0)
    start = time.perf_counter()
    compiled = sample.lower(key, args.n).compile()
    record("sample", f"sample {precision} compile", time.perf_counter() - start, "s")

    keys = iter(jax.random.split(jax.random.key(1), args.repeat + 1))
    jax.block_until_ready(compiled(next(keys)))
    seconds = timeit(
        lambda: jax.block_until_ready(compiled(next(keys))), repeat=args.repeat
    )
    record("sample", f"sample {precision}", args.n / seconds, "pairs/s", f"n={args.n}")


if __name__ == "__main__":
    main()
