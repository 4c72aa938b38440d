"""Button presses: batched, jitted MJX against a per-sample C MuJoCo loop.

Both sides compute the same presses for the same arm positions in one run:

* MJX: ``jax.jit(ccjax.physics.press)`` on the whole batch (arm position to
  joint angles, ``mjx.kinematics``, press rule), on JAX's default device.
  Compilation is timed apart from the steady state.
* C: for each sample, set qpos and call ``mujoco.mj_kinematics``, copying out
  the fingertip and cap positions; then the press rule in NumPy on all of
  them. The joint angles are computed beforehand and not timed, so the C side
  is spared the inverse kinematics that the MJX side includes.

The goal is an MJX rate per sample at least that of the C loop on a CPU; on a
GPU the C loop still runs on the host CPU, and the device kind is recorded.

Usage: python bench/bench_physics.py [--batch 65536] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time

import jax
import mujoco
import numpy as np
from _common import record, timeit

from ccjax import physics


def c_loop_press(model: mujoco.MjModel, finger_qpos: np.ndarray) -> np.ndarray:
    """Presses by C MuJoCo kinematics per sample and the NumPy press rule."""
    data = mujoco.MjData(model)
    finger = [model.joint(name).qposadr[0] for name in physics.FINGER_JOINTS]
    tip_site = model.site("fingertip").id
    cap_sites = [model.site(f"button_{b}").id for b in physics.BUTTONS]
    sites = [tip_site, *cap_sites]
    positions = np.empty((len(finger_qpos), len(sites), 3))

    data.qpos[:] = model.qpos0
    for i, q in enumerate(finger_qpos):
        data.qpos[finger] = q
        mujoco.mj_kinematics(model, data)
        positions[i] = data.site_xpos[sites]

    dome = model.site_size[tip_site, 0]
    core = model.site_size[cap_sites, 0]
    rim = np.array([model.geom(f"cap_{b}").size[0] for b in physics.BUTTONS])
    tip, caps = positions[:, :1], positions[:, 1:]
    distance = np.hypot(tip[..., 0] - caps[..., 0], tip[..., 1] - caps[..., 1])
    ramp = np.clip((rim - distance) / (rim - core), 0.0, 1.0)
    touching = tip[..., 2] - dome <= caps[..., 2] + physics.CONTACT_TOLERANCE
    return np.where(touching, ramp, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=65536)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    model = physics.load_model()
    arm = jax.random.uniform(jax.random.key(0), (args.batch,))
    press = jax.jit(physics.press)

    start = time.perf_counter()
    compiled = press.lower(arm).compile()
    compile_s = time.perf_counter() - start
    record("physics", f"mjx press compile b={args.batch}", compile_s, "s")

    pressed = compiled(arm).block_until_ready()
    mjx_s = timeit(lambda: compiled(arm).block_until_ready(), repeat=args.repeat)
    mjx_rate = args.batch / mjx_s
    record("physics", f"mjx press b={args.batch}", mjx_rate, "samples/s")

    finger_qpos = np.asarray(jax.jit(physics.arm_qpos)(arm), dtype=np.float64)
    reference = c_loop_press(model, finger_qpos)
    c_s = timeit(lambda: c_loop_press(model, finger_qpos), repeat=args.repeat)
    c_rate = args.batch / c_s
    record(
        "physics",
        f"c loop mj_kinematics+press n={args.batch}",
        c_rate,
        "samples/s",
        "joint angles precomputed, not timed",
    )

    worst = float(np.max(np.abs(np.asarray(pressed, dtype=np.float64) - reference)))
    record(
        "physics",
        "mjx/c per-sample speed ratio",
        mjx_rate / c_rate,
        "x",
        f"max |press difference| {worst:.2e}",
    )


if __name__ == "__main__":
    main()
