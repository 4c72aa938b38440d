"""Batches of CausalCircuit pairs, and counterfactuals, as device arrays.

This module composes the causal model (``ccjax.scm``) with the robot's button
presses (``ccjax.physics``). Everything here is pure JAX: a :class:`Batch` can
be sampled inside a user's jitted training step, on any device, with no host
work. Rendering and files are the business of ``ccjax.render`` and
``ccjax.export``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ccjax import physics, scm

__all__ = ["Batch", "counterfactual", "sample"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Batch:
    """A batch of before/after pairs, named as in the published npz files.

    Index 0 of the pair axis is the state before the intervention and index 1
    the state after. Latents and noise are in variable order (red, green,
    blue, arm); presses in button order (red, green, blue). Floats are float32,
    or float64 under JAX's x64 mode.

    Attributes:
      original_latents: ``(n, 2, 4)`` float, the causal variables.
      epsilon: ``(n, 2, 4)`` float, their noise encodings.
      pressed: ``(n, 2, 3)`` float in [0, 1], how far each button is pressed.
      intervention_labels: ``(n,)`` int, 0 for no intervention, 1-4 for red,
        green, blue and arm (or the row of custom ``targets``).
      intervention_masks: ``(n, 4)`` bool, the intervened variables.
      qpos: ``(n, 2, 3)`` float, the finger's joint angles (upper, middle,
        lower) in radians, for rendering.
    """

    original_latents: jax.Array
    epsilon: jax.Array
    pressed: jax.Array
    intervention_labels: jax.Array
    intervention_masks: jax.Array
    qpos: jax.Array

    def __len__(self) -> int:
        return self.intervention_labels.shape[0]

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Copy the batch to host memory in the published files' dtypes.

        Returns:
          A dict of NumPy arrays keyed by field name: floats as float64,
          labels as int64 and masks as bool.
        """
        dtypes = {"intervention_labels": np.int64, "intervention_masks": bool}
        return {
            field.name: np.asarray(getattr(self, field.name)).astype(
                dtypes.get(field.name, np.float64)
            )
            for field in dataclasses.fields(self)
        }


def sample(
    key: jax.Array,
    n: int,
    *,
    label_probs: jax.Array | None = None,
    targets: np.ndarray | None = None,
) -> Batch:
    """Sample ``n`` CausalCircuit pairs with the robot's button presses.

    Jittable with ``n`` (and ``targets``) static, e.g.
    ``jax.jit(ccjax.sample, static_argnums=1)``, and usable inside a jitted
    training step.

    Args:
      key: a JAX PRNG key.
      n: number of pairs, a positive Python int.
      label_probs: optional ``(n_labels,)`` probabilities of the intervention
        labels; uniform over the five published labels by default.
      targets: optional concrete ``(n_labels, 4)`` bool array; row ``k`` is the
        set of variables label ``k`` intervenes on. Defaults to
        ``ccjax.scm.LABEL_TARGETS`` (none, red, green, blue, arm).

    Returns:
      A :class:`Batch` of ``n`` pairs.

    Raises:
      ValueError: if ``n`` is not a positive int, or ``label_probs`` or
        ``targets`` are malformed.
    """
    pairs = scm.sample_pairs(
        key, physics.press, n, label_probs=label_probs, targets=targets
    )
    qpos = physics.arm_qpos(pairs["original_latents"][..., scm.ARM])
    return Batch(**pairs, qpos=qpos.astype(pairs["original_latents"].dtype))


def counterfactual(
    latents: jax.Array, target: jax.Array | int, value: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """What the latents would have been had ``target`` been set to ``value``.

    The three steps of a counterfactual: abduct the noise that produced the
    observed latents (their noise encoding), replace the target's mechanism by
    the given value, and re-solve the model with the presses recomputed from
    the (possibly moved) arm. Variables that do not descend from the target
    are returned unchanged, bit for bit. This is the computation that
    :func:`sample` performs for its "after" states, with a chosen rather than
    a random value.

    Args:
      latents: ``(..., 4)`` float, observed latents (red, green, blue, arm).
      target: int or ``(...)`` int array, the variable index to intervene on
        (0 red, 1 green, 2 blue, 3 arm).
      value: ``(...)`` float, the value to set it to. Lights accept any value;
        an arm value outside [0, 1] presses as the nearest end of the arc.

    Returns:
      ``(latents_cf, pressed_cf)``: ``(..., 4)`` counterfactual latents and
      ``(..., 3)`` the presses in that world.

    Raises:
      ValueError: if ``latents`` does not end in 4, or a concrete ``target`` is
        not in 0..3.
    """
    latents = jnp.asarray(latents)
    if latents.ndim == 0 or latents.shape[-1] != scm.N_VARIABLES:
        raise ValueError(
            f"latents must have shape (..., 4), got {tuple(latents.shape)}."
        )
    if not jnp.issubdtype(latents.dtype, jnp.floating):
        latents = latents.astype(jnp.result_type(float))
    target_np = scm._concrete(target)
    if target_np is not None and not np.all((target_np >= 0) & (target_np < 4)):
        raise ValueError(
            f"target must be a variable index in 0..3 (red, green, blue, arm), "
            f"got {target_np.tolist()}."
        )

    batch = latents.shape[:-1]
    target = jnp.broadcast_to(jnp.asarray(target), batch)
    value = jnp.broadcast_to(jnp.asarray(value, latents.dtype), batch)
    do_mask = target[..., None] == jnp.arange(scm.N_VARIABLES).reshape(
        (1,) * len(batch) + (scm.N_VARIABLES,)
    )
    do_value = jnp.where(do_mask, value[..., None], latents)

    pressed = physics.press(latents[..., scm.ARM])
    noise = scm.noise_encoding(latents, pressed)
    latents_cf, _, pressed_cf = scm.intervene(
        noise, latents, pressed, do_mask, do_value, physics.press
    )
    return latents_cf, pressed_cf
