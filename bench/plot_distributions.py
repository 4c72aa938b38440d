"""Plots of the button-press curves and of each latent's distribution.

Writes ``presses.png`` (the three presses over the arm position, with the
published plateaus shaded) and ``latents.png`` (histograms of the four
latents in the "before" states of ``--n`` pairs) into ``--out``, by default
``bench/out``; the README's copies live in ``notebooks/figures``.
Run from the repository root: ``python bench/plot_distributions.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import ccjax
from ccjax import physics, scm

OUT = Path(__file__).with_name("out")
COLOURS = ("tab:red", "tab:green", "tab:blue", "tab:gray")
# Plateaus where a button is fully pressed, measured from the published data.
PLATEAUS = {"green": (0.228, 0.297), "red": (0.48, 0.56), "blue": (0.785, 0.857)}


def plot_presses(path: Path) -> None:
    arm = jnp.linspace(0, 1, 4001)
    pressed = np.asarray(jax.jit(physics.press)(arm))
    fig, ax = plt.subplots(figsize=(8, 3))
    for name, (lo, hi) in PLATEAUS.items():
        ax.axvspan(lo, hi, color=f"tab:{name}", alpha=0.12, lw=0)
    for i, name in enumerate(scm.VARIABLES[:3]):
        ax.plot(arm, pressed[:, i], color=COLOURS[i], label=f"{name} button")
    ax.set(xlabel="arm position $z_A$", ylabel="pressed", ylim=(-0.05, 1.05))
    ax.set_title("Button presses along the arc (shaded: published plateaus)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_latents(path: Path, n: int) -> None:
    batch = jax.jit(ccjax.sample, static_argnums=1)(jax.random.key(0), n)
    latents = np.asarray(batch.original_latents[:, 0])
    fig, axes = plt.subplots(1, 4, figsize=(12, 2.8))
    for i, ax in enumerate(axes):
        ax.hist(latents[:, i], bins=100, range=(0, 1), color=COLOURS[i])
        ax.set(title=f"$z_{{{scm.VARIABLES[i][0].upper()}}}$ ({scm.VARIABLES[i]})")
        ax.set_yscale("log")
    fig.suptitle(f"Latents of {n:,} observational samples (log counts)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="samples to histogram")
    parser.add_argument("--out", type=Path, default=OUT, help="output directory")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    plot_presses(args.out / "presses.png")
    plot_latents(args.out / "latents.png", args.n)
    print(f"wrote {args.out / 'presses.png'} and {args.out / 'latents.png'}")


if __name__ == "__main__":
    main()
