"""The structural causal model of CausalCircuit.

Four causal variables, always in this order along the last axis:

    index  0: red light ``z_R``   1: green light ``z_G``
           2: blue light ``z_B``  3: arm position ``z_A``

The graph is ``A -> R, A -> G, A -> B, G -> R, B -> R``: the arm presses the
buttons, each button drives its own light, and the red light is also driven
by the green and blue lights. Each variable has one independent noise
``eps ~ Uniform(0, 1)`` and a mechanism:

* the arm is its noise, ``z_A = eps_A``;
* the buttons ``pressed = press(z_A)`` in [0, 1]^3 come from the robot scene
  (``ccjax.physics``), so this module takes them as an input;
* each light is a Beta quantile of its clipped noise,
  ``z_k = BetaQuantile(1 + 3 s_k, 4 - 3 s_k)(clip(eps_k, 0.001, 0.999))``,
  with drives ``s_G = pressed_G``, ``s_B = pressed_B`` and
  ``s_R = min(1, pressed_R + z_G + z_B)``.

An intervention replaces some mechanisms by fixed values (a perfect
intervention) and re-solves the others in topological order with their noise
unchanged. Going backwards, :func:`noise_encoding` recovers the noise that
produces given latents, which is how counterfactuals are computed.

Everything here is pure JAX, works on any leading batch shape and runs in
float32, or float64 under JAX's x64 mode.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ccjax.numerics import beta_cdf, beta_quantile

__all__ = [
    "ADJACENCY",
    "ARM",
    "BLUE",
    "GREEN",
    "LABEL_TARGETS",
    "NOISE_CLIP",
    "N_VARIABLES",
    "REACHES",
    "RED",
    "VARIABLES",
    "intervene",
    "noise_encoding",
    "sample_pairs",
    "solve",
]

RED, GREEN, BLUE, ARM = 0, 1, 2, 3
VARIABLES = ("red", "green", "blue", "arm")
N_VARIABLES = 4

# ADJACENCY[i, j] is 1 when variable i is a direct cause of variable j.
ADJACENCY = np.array(
    [
        [0, 0, 0, 0],  # red causes nothing
        [1, 0, 0, 0],  # green -> red
        [1, 0, 0, 0],  # blue -> red
        [1, 1, 1, 0],  # arm -> red, green, blue (through the buttons)
    ],
    dtype=np.int8,
)
ADJACENCY.flags.writeable = False

# REACHES[i, j] is true when j is i itself or a descendant of i: the variables
# an intervention on i can change.
REACHES = np.linalg.matrix_power(np.eye(N_VARIABLES, dtype=np.int64) + ADJACENCY, 3) > 0
REACHES.flags.writeable = False

# The published intervention labels: 0 leaves the pair unchanged, 1-4 target
# red, green, blue and the arm. Row k is the mask of label k.
LABEL_TARGETS = np.array(
    [
        [False, False, False, False],
        [True, False, False, False],
        [False, True, False, False],
        [False, False, True, False],
        [False, False, False, True],
    ]
)
LABEL_TARGETS.flags.writeable = False

# Light noise is clipped before the quantile; this is what produces the exact
# repeated values ("atoms") in the published latents.
NOISE_CLIP = (0.001, 0.999)

PressedFn = Callable[[jax.Array], jax.Array]


def _check_trailing(name: str, x: jax.Array, size: int) -> None:
    if x.ndim == 0 or x.shape[-1] != size:
        raise ValueError(
            f"{name} must have shape (..., {size}), got {tuple(x.shape)}; "
            f"put the {size} variables on the last axis."
        )


def _float(*arrays: jax.Array) -> list[jax.Array]:
    # Float inputs keep their precision; anything else becomes JAX's default
    # float (float32, or float64 in x64 mode).
    dtype = jnp.result_type(*arrays)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return [jnp.asarray(x, dtype) for x in arrays]


def _red_drive(pressed_red: jax.Array, green: jax.Array, blue: jax.Array) -> jax.Array:
    # The red light is driven by its own button and by both other lights; the
    # sum saturates at full drive.
    return jnp.clip(pressed_red + green + blue, 0, 1)


def solve(
    noise: jax.Array,
    pressed: jax.Array,
    *,
    do_mask: jax.Array | None = None,
    do_value: jax.Array | None = None,
) -> jax.Array:
    """Latents from noise and button presses, in topological order.

    Args:
      noise: ``(..., 4)`` float, ``eps`` in [0, 1] per variable; the light
        entries are clipped to ``NOISE_CLIP`` before use.
      pressed: ``(..., 3)`` float in [0, 1], the button presses (red, green,
        blue) that the arm position ``noise[..., ARM]`` (or the intervened
        arm value) produces. The caller computes them, usually with
        ``ccjax.physics.press``.
      do_mask: optional ``(..., 4)`` bool, true where a variable is set by a
        perfect intervention instead of its mechanism.
      do_value: optional ``(..., 4)`` float, the intervened values (read only
        where ``do_mask`` is true).

    Returns:
      ``(..., 4)`` latents ``(z_R, z_G, z_B, z_A)`` in the promoted float dtype.

    Raises:
      ValueError: if a trailing axis has the wrong size, or only one of
        ``do_mask`` and ``do_value`` is given.
    """
    noise, pressed = jnp.asarray(noise), jnp.asarray(pressed)
    _check_trailing("noise", noise, N_VARIABLES)
    _check_trailing("pressed", pressed, 3)
    if (do_mask is None) != (do_value is None):
        raise ValueError("do_mask and do_value must be given together, or neither.")
    if do_mask is None:
        do_mask = jnp.zeros(noise.shape, bool)
        do_value = jnp.zeros_like(noise)
    do_mask, do_value = jnp.asarray(do_mask, bool), jnp.asarray(do_value)
    _check_trailing("do_mask", do_mask, N_VARIABLES)
    _check_trailing("do_value", do_value, N_VARIABLES)
    noise, pressed, do_value = _float(noise, pressed, do_value)

    def mechanism(index, eps, drive):
        z = beta_quantile(jnp.clip(eps, *NOISE_CLIP), drive)
        return jnp.where(do_mask[..., index], do_value[..., index], z)

    arm = jnp.where(do_mask[..., ARM], do_value[..., ARM], noise[..., ARM])
    green = mechanism(GREEN, noise[..., GREEN], pressed[..., GREEN])
    blue = mechanism(BLUE, noise[..., BLUE], pressed[..., BLUE])
    red_drive = _red_drive(pressed[..., RED], green, blue)
    red = mechanism(RED, noise[..., RED], red_drive)
    return jnp.stack([red, green, blue, arm], axis=-1)


def noise_encoding(latents: jax.Array, pressed: jax.Array) -> jax.Array:
    """The noise that makes the mechanisms produce ``latents``: ``solve``'s inverse.

    Each light's noise is its Beta CDF at the observed value, with the drive
    computed from the observed parents; the arm's noise is its value. For
    latents that ``solve`` can produce, ``solve(noise_encoding(z, b), b)``
    gives back ``z`` to round-off. A light value outside the range its clipped
    noise can reach (possible after an intervention) encodes to noise outside
    ``NOISE_CLIP``, which ``solve`` would clip.

    Args:
      latents: ``(..., 4)`` float, ``(z_R, z_G, z_B, z_A)``.
      pressed: ``(..., 3)`` float in [0, 1], the presses at ``z_A``.

    Returns:
      ``(..., 4)`` float noise in [0, 1].

    Raises:
      ValueError: if a trailing axis has the wrong size.
    """
    latents, pressed = jnp.asarray(latents), jnp.asarray(pressed)
    _check_trailing("latents", latents, N_VARIABLES)
    _check_trailing("pressed", pressed, 3)
    latents, pressed = _float(latents, pressed)
    red_drive = _red_drive(pressed[..., RED], latents[..., GREEN], latents[..., BLUE])
    red = beta_cdf(latents[..., RED], red_drive)
    green = beta_cdf(latents[..., GREEN], pressed[..., GREEN])
    blue = beta_cdf(latents[..., BLUE], pressed[..., BLUE])
    return jnp.stack([red, green, blue, latents[..., ARM]], axis=-1)


def intervene(
    noise: jax.Array,
    latents: jax.Array,
    pressed: jax.Array,
    do_mask: jax.Array,
    do_value: jax.Array,
    pressed_fn: PressedFn,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The state after a perfect intervention, every other noise held fixed.

    Variables that are neither intervened on nor descendants of an intervened
    variable are copied from ``latents``, so they are bit-identical before
    and after. The others are re-solved, with the presses recomputed when the
    arm moves. The returned noise is the published noise encoding of the new
    state: unchanged for variables not intervened on, and the inverse of the
    mechanism at the new value (given its new parents) for intervened ones.

    Args:
      noise: ``(..., 4)`` float, the noise that produced ``latents`` (light
        entries already clipped).
      latents: ``(..., 4)`` float, the state before.
      pressed: ``(..., 3)`` float, the presses before.
      do_mask: ``(..., 4)`` bool, the intervened variables.
      do_value: ``(..., 4)`` float, their new values.
      pressed_fn: maps arm positions ``(...)`` to presses ``(..., 3)``.

    Returns:
      ``(latents, noise, pressed)`` after the intervention, shaped as the inputs.
    """
    do_mask = jnp.asarray(do_mask, bool)
    _check_trailing("do_mask", do_mask, N_VARIABLES)
    noise, latents, pressed, do_value = _float(noise, latents, pressed, do_value)

    arm = jnp.where(do_mask[..., ARM], do_value[..., ARM], latents[..., ARM])
    moved = do_mask[..., ARM, None]
    pressed_after = jnp.where(moved, pressed_fn(arm).astype(pressed.dtype), pressed)
    solved = solve(noise, pressed_after, do_mask=do_mask, do_value=do_value)

    reaches = jnp.asarray(REACHES).reshape((1,) * (do_mask.ndim - 1) + REACHES.shape)
    changed = jnp.any(do_mask[..., :, None] & reaches, axis=-2)
    latents_after = jnp.where(changed, solved, latents)
    encoded = noise_encoding(latents_after, pressed_after)
    noise_after = jnp.where(do_mask, encoded, noise)
    return latents_after, noise_after, pressed_after


def _concrete(x) -> np.ndarray | None:
    """``x`` as NumPy when its value is known now, None when it is traced."""
    try:
        return np.asarray(x)
    except jax.errors.TracerArrayConversionError:
        return None


def _check_labels(label_probs, targets) -> tuple[jax.Array, jax.Array]:
    targets = LABEL_TARGETS if targets is None else targets
    targets_np = _concrete(targets)
    if targets_np is None or targets_np.ndim != 2 or targets_np.shape[1] != 4:
        raise ValueError(
            "targets must be a concrete (n_labels, 4) boolean array of "
            "intervention masks, one row per label."
        )
    n_labels = targets_np.shape[0]
    if label_probs is None:
        return jnp.full(n_labels, 1 / n_labels), jnp.asarray(targets_np, bool)

    probs = _concrete(label_probs)
    if probs is not None:
        # A traced label_probs cannot be checked here; it is used as given.
        if probs.shape != (n_labels,):
            raise ValueError(
                f"label_probs must have shape ({n_labels},), one probability per "
                f"label, got {probs.shape}."
            )
        if np.any(probs < 0) or not np.isclose(probs.sum(), 1, atol=1e-6):
            raise ValueError(
                f"label_probs must be non-negative and sum to 1, got {probs.tolist()}."
            )
    return jnp.asarray(label_probs), jnp.asarray(targets_np, bool)


def sample_pairs(
    key: jax.Array,
    pressed_fn: PressedFn,
    n: int,
    *,
    label_probs: jax.Array | None = None,
    targets: np.ndarray | None = None,
    dtype=None,
) -> dict[str, jax.Array]:
    """Draw ``n`` before/after pairs, each with a random intervention.

    Each pair draws fresh noise, a label from ``label_probs`` and, for the
    intervened variables, new values from Uniform(0, 1). The "after" state
    keeps every other noise (see :func:`intervene`).

    Args:
      key: a JAX PRNG key.
      pressed_fn: maps arm positions ``(n,)`` to presses ``(n, 3)``, columns
        red, green, blue; usually ``ccjax.physics.press``.
      n: number of pairs, a positive Python int.
      label_probs: optional ``(n_labels,)`` probabilities of the labels;
        uniform by default. Checked when concrete; under tracing it is used
        as given.
      targets: optional concrete ``(n_labels, 4)`` bool, the variables each
        label intervenes on. Defaults to ``LABEL_TARGETS`` (none, red, green,
        blue, arm); rows may name several variables at once.
      dtype: float dtype of the result; JAX's default float when None.

    Returns:
      A dict of arrays named as in the published files:
      ``original_latents (n, 2, 4)``, ``epsilon (n, 2, 4)``,
      ``pressed (n, 2, 3)``, ``intervention_labels (n,)`` int32 and
      ``intervention_masks (n, 4)`` bool.

    Raises:
      ValueError: if ``n`` is not a positive int, or ``label_probs`` or
        ``targets`` are malformed.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0:
        raise ValueError(f"n must be a positive int (the number of pairs), got {n!r}.")
    probs, targets = _check_labels(label_probs, targets)
    dtype = jnp.result_type(float) if dtype is None else dtype
    key_noise, key_label, key_value = jax.random.split(key, 3)

    noise = jax.random.uniform(key_noise, (n, N_VARIABLES), dtype)
    is_light = (np.arange(N_VARIABLES) != ARM)[None, :]
    noise = jnp.where(is_light, jnp.clip(noise, *NOISE_CLIP), noise)
    labels = jax.random.categorical(key_label, jnp.log(probs), shape=(n,))
    masks = targets[labels]
    values = jax.random.uniform(key_value, (n, N_VARIABLES), dtype)

    pressed = pressed_fn(noise[:, ARM]).astype(dtype)
    latents = solve(noise, pressed)
    after = intervene(noise, latents, pressed, masks, values, pressed_fn)
    latents_after, noise_after, pressed_after = after
    return {
        "original_latents": jnp.stack([latents, latents_after], axis=1),
        "epsilon": jnp.stack([noise, noise_after], axis=1),
        "pressed": jnp.stack([pressed, pressed_after], axis=1),
        "intervention_labels": labels,
        "intervention_masks": masks,
    }
