"""Throughput of the causal model's ``solve``: ccjax against TFP and SciPy.

Three implementations of the same mechanisms (the light quantiles in
topological order) solve the same batch in the same process:

* ccjax's ``scm.solve`` (jitted, float32, and float64 under x64);
* the same model built on TensorFlow Probability's JAX substrate
  (``tfp.distributions.Beta(...).quantile``, jitted, float32), if installed;
  its quantile is wrong at exactly u = 0.5, so the noise is stepped off 0.5;
* the same model in NumPy on SciPy's ``stats.beta.ppf`` (float64).

Compile time is reported apart from steady state. Run from the repository
root: ``python bench/bench_scm.py [--n 1000000]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import record, timeit
from scipy import stats

from ccjax import scm


def solve_tfp(noise, pressed):
    """The mechanisms with TFP's Beta quantile, for comparison."""
    from tensorflow_probability.substrates import jax as tfp

    def light(eps, drive):
        beta = tfp.distributions.Beta(1 + 3 * drive, 4 - 3 * drive)
        return beta.quantile(jnp.clip(eps, 0.001, 0.999))

    green = light(noise[:, 1], pressed[:, 1])
    blue = light(noise[:, 2], pressed[:, 2])
    red = light(noise[:, 0], jnp.minimum(1, pressed[:, 0] + green + blue))
    return jnp.stack([red, green, blue, noise[:, 3]], axis=-1)


def solve_scipy(noise, pressed):
    """The mechanisms with SciPy's ``beta.ppf``, in float64."""

    def light(eps, drive):
        return stats.beta.ppf(np.clip(eps, 0.001, 0.999), 1 + 3 * drive, 4 - 3 * drive)

    green = light(noise[:, 1], pressed[:, 1])
    blue = light(noise[:, 2], pressed[:, 2])
    red = light(noise[:, 0], np.minimum(1, pressed[:, 0] + green + blue))
    return np.stack([red, green, blue, noise[:, 3]], axis=-1)


def bench_jax(name, fn, noise, pressed, repeat):
    """Compile, then time steady state; returns (samples/s, result)."""
    jitted = jax.jit(fn)
    start = time.perf_counter()
    compiled = jitted.lower(noise, pressed).compile()
    record("scm", f"{name} compile", time.perf_counter() - start, "s")
    out = compiled(noise, pressed).block_until_ready()
    seconds = timeit(
        lambda: compiled(noise, pressed).block_until_ready(), repeat=repeat
    )
    rate = noise.shape[0] / seconds
    record("scm", f"{name} solve", rate, "samples/s", f"n={noise.shape[0]}")
    return rate, np.asarray(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="batch size")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions")
    parser.add_argument("--no-tfp", action="store_true", help="skip the TFP baseline")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    noise64 = rng.uniform(size=(args.n, 4))
    # Presses as the robot makes them: mostly zero, some partial, some full.
    pressed64 = np.clip(rng.uniform(-1.5, 1.5, size=(args.n, 3)), 0, 1)
    # TFP's Beta quantile is wrong at exactly u = 0.5, so every comparison
    # steps the noise off 0.5 (in float64 and float32 alike).
    noise64[noise64 == 0.5] = np.nextafter(0.5, 1.0)
    noise32 = noise64.astype(np.float32)
    noise32[noise32 == 0.5] = np.nextafter(np.float32(0.5), np.float32(1))
    noise, pressed = jnp.asarray(noise32), jnp.float32(pressed64)

    ours, ours_out = bench_jax("ccjax f32", scm.solve, noise, pressed, args.repeat)
    with jax.enable_x64(True):
        bench_jax(
            "ccjax f64", scm.solve, jnp.asarray(noise64), jnp.asarray(pressed64), 2
        )

    if not args.no_tfp:
        try:
            tfp_rate, tfp_out = bench_jax("tfp f32", solve_tfp, noise, pressed, 2)
        except ImportError:
            print("TFP is not installed (pip install tfp-nightly); skipping it.")
        else:
            record("scm", "ccjax f32 / tfp f32", ours / tfp_rate, "x")
            diff = np.abs(ours_out - tfp_out).max()
            record("scm", "max |ccjax - tfp| f32", diff, "abs")

    start = time.perf_counter()
    scipy_out = solve_scipy(noise64, pressed64)
    scipy_rate = args.n / (time.perf_counter() - start)
    record("scm", "scipy f64 solve", scipy_rate, "samples/s", f"n={args.n}")
    record("scm", "ccjax f32 / scipy f64", ours / scipy_rate, "x")
    record(
        "scm", "max |ccjax f32 - scipy f64|", np.abs(ours_out - scipy_out).max(), "abs"
    )


if __name__ == "__main__":
    main()
