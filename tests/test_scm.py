"""The causal model against a plain NumPy/SciPy transcription of its mechanisms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ccjax import scm
from tests.spec_reference import ref_noise_encoding, ref_solve

TOL = {np.float64: 1e-12, np.float32: 5e-6}
N_PAIRS = 4000


def toy_press(arm):
    """A deterministic stand-in for the robot: three tent-shaped presses."""
    arm = jnp.asarray(arm)
    centres = jnp.array([0.52, 0.26, 0.82], arm.dtype).reshape((1,) * arm.ndim + (3,))
    return jnp.clip(1 - jnp.abs(arm[..., None] - centres) / 0.06, 0, 1)


def random_inputs(rng, n, dtype):
    noise = rng.uniform(size=(n, 4)).astype(dtype)
    # Mix exact zeros and ones into the presses, as the robot produces them.
    pressed = np.clip(rng.uniform(-0.5, 1.5, size=(n, 3)), 0, 1).astype(dtype)
    return noise, pressed


def ref_press(arm):
    return np.clip(1 - np.abs(arm[:, None] - np.array([0.52, 0.26, 0.82])) / 0.06, 0, 1)


# --- Fixtures that compile once per module. ---


@pytest.fixture(scope="module")
def solve_jit():
    return jax.jit(scm.solve)


@pytest.fixture(scope="module")
def pairs64():
    with jax.enable_x64(True):
        sample = jax.jit(scm.sample_pairs, static_argnums=(1, 2))
        out = sample(jax.random.key(0), toy_press, N_PAIRS)
        return jax.tree.map(np.asarray, out)


# --- Graph. ---


def test_adjacency_is_the_published_graph():
    edges = {(i, j) for i, j in zip(*np.nonzero(scm.ADJACENCY), strict=True)}
    R, G, B, A = scm.RED, scm.GREEN, scm.BLUE, scm.ARM
    assert edges == {(A, R), (A, G), (A, B), (G, R), (B, R)}
    # Acyclic: the fourth power of a 4-node adjacency matrix is zero.
    assert not np.linalg.matrix_power(scm.ADJACENCY.astype(int), 4).any()


# --- Mechanisms. ---


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_solve_matches_reference(solve_jit, dtype, jit):
    rng = np.random.default_rng(0)
    noise, pressed = random_inputs(rng, 512, dtype)
    do_mask = rng.uniform(size=(512, 4)) < 0.3
    do_value = rng.uniform(size=(512, 4)).astype(dtype)
    fn = solve_jit if jit else scm.solve
    with jax.enable_x64(dtype == np.float64):
        got = np.asarray(fn(noise, pressed, do_mask=do_mask, do_value=do_value))
        plain = np.asarray(fn(noise, pressed))
    assert got.dtype == dtype
    want = ref_solve(noise, pressed, do_mask, do_value.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype])
    np.testing.assert_allclose(
        plain, ref_solve(noise, pressed), rtol=0, atol=TOL[dtype]
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_noise_encoding_matches_reference_and_inverts_solve(dtype):
    rng = np.random.default_rng(1)
    noise, pressed = random_inputs(rng, 512, dtype)
    with jax.enable_x64(dtype == np.float64):
        latents = scm.solve(noise, pressed)
        encoded = np.asarray(scm.noise_encoding(latents, pressed))
        back = np.asarray(scm.solve(encoded, pressed))
    want = ref_noise_encoding(
        np.asarray(latents, np.float64), pressed.astype(np.float64)
    )
    np.testing.assert_allclose(encoded, want, rtol=0, atol=TOL[dtype])
    # The encoding gives back the clipped noise that was used...
    clipped = np.where(np.arange(4) < 3, np.clip(noise, 0.001, 0.999), noise)
    np.testing.assert_allclose(encoded, clipped, rtol=0, atol=10 * TOL[dtype])
    # ...and solving it gives back the latents.
    np.testing.assert_allclose(back, latents, rtol=0, atol=TOL[dtype])


def test_clip_atoms_are_exact(x64):
    # Noise beyond the clip bounds, no press / full press: the published atoms.
    noise = np.array([[0.0, 0.0, 0.0, 0.5], [1.0, 1.0, 1.0, 0.5], [0.0, 0.0, 0.0, 0.5]])
    pressed = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    z = np.asarray(scm.solve(noise, pressed))
    assert z[0, 1] == z[0, 2] == 0.0002500938047251259
    assert z[1, 0] == z[1, 1] == z[1, 2] == 0.9997499061952749
    assert z[2, 1] == z[2, 2] == 0.1778279410038923


# --- Pairs. ---


def test_pairs_shapes_and_dtypes(pairs64):
    n = N_PAIRS
    assert pairs64["original_latents"].shape == (n, 2, 4)
    assert pairs64["epsilon"].shape == (n, 2, 4)
    assert pairs64["pressed"].shape == (n, 2, 3)
    assert pairs64["intervention_labels"].shape == (n,)
    assert pairs64["intervention_masks"].shape == (n, 4)
    assert pairs64["original_latents"].dtype == np.float64
    assert pairs64["intervention_masks"].dtype == bool
    masks = scm.LABEL_TARGETS[pairs64["intervention_labels"]]
    np.testing.assert_array_equal(pairs64["intervention_masks"], masks)


def test_before_state_follows_the_mechanisms(pairs64):
    z = pairs64["original_latents"][:, 0]
    eps = pairs64["epsilon"][:, 0]
    pressed = pairs64["pressed"][:, 0]
    # The stored light noise is the clipped noise actually used.
    assert eps[:, :3].min() >= 0.001 and eps[:, :3].max() <= 0.999
    np.testing.assert_array_equal(z[:, 3], eps[:, 3])
    np.testing.assert_allclose(pressed, ref_press(z[:, 3]), rtol=0, atol=1e-15)
    np.testing.assert_allclose(z, ref_solve(eps, pressed), rtol=0, atol=TOL[np.float64])


@pytest.mark.parametrize("label", range(5))
def test_after_state_for_each_target(pairs64, label):
    pick = pairs64["intervention_labels"] == label
    assert pick.sum() > 100
    z0, z1 = pairs64["original_latents"][pick].transpose(1, 0, 2)
    e0, e1 = pairs64["epsilon"][pick].transpose(1, 0, 2)
    p1 = pairs64["pressed"][pick][:, 1]
    mask = scm.LABEL_TARGETS[label]

    # Noise of non-intervened variables is unchanged, bit for bit.
    np.testing.assert_array_equal(e1[:, ~mask], e0[:, ~mask])
    # Non-descendants of the target are bit-identical.
    changed = scm.REACHES[mask].any(axis=0) if mask.any() else np.zeros(4, bool)
    np.testing.assert_array_equal(z1[:, ~changed], z0[:, ~changed])
    if not mask.any():
        return
    target = int(np.flatnonzero(mask)[0])
    # The intervened value is a fresh uniform draw, unrelated to the old one.
    assert not np.any(z1[:, target] == z0[:, target])
    # Descendants are re-solved from the old noise and the new value.
    do_mask = np.broadcast_to(mask, z0.shape)
    np.testing.assert_allclose(p1, ref_press(z1[:, 3]), rtol=0, atol=1e-15)
    want = ref_solve(e0, p1, do_mask, z1)
    np.testing.assert_allclose(z1, want, rtol=0, atol=TOL[np.float64])
    # The intervened variable's noise is the inverse of its mechanism.
    encoded = ref_noise_encoding(z1, p1)
    np.testing.assert_allclose(e1[:, target], encoded[:, target], atol=TOL[np.float64])


def test_intervened_values_are_uniform(pairs64):
    labels = pairs64["intervention_labels"]
    for label in range(1, 5):
        values = pairs64["original_latents"][labels == label, 1, label - 1]
        # Kolmogorov-Smirnov distance to Uniform(0, 1); 1.63/sqrt(n) is the
        # 1% critical value.
        v = np.sort(values)
        n = len(v)
        ks = np.max(np.abs(v - np.arange(1, n + 1) / n))
        assert ks < 1.63 / np.sqrt(n)


def test_label_frequencies_are_uniform_by_default(pairs64):
    counts = np.bincount(pairs64["intervention_labels"], minlength=5)
    p = 0.2
    sigma = np.sqrt(N_PAIRS * p * (1 - p))
    assert np.all(np.abs(counts - N_PAIRS * p) < 5 * sigma), counts


def test_custom_label_probs_and_target_sets():
    probs = np.array([0.0, 0.5, 0.0, 0.0, 0.5])
    out = scm.sample_pairs(jax.random.key(3), toy_press, 1000, label_probs=probs)
    counts = np.bincount(np.asarray(out["intervention_labels"]), minlength=5)
    assert counts[[0, 2, 3]].sum() == 0
    assert abs(counts[1] - 500) < 5 * np.sqrt(250)

    # A label that intervenes on green and blue at once.
    targets = np.array([[False, False, False, False], [False, True, True, False]])
    out = scm.sample_pairs(jax.random.key(4), toy_press, 200, targets=targets)
    masks = np.asarray(out["intervention_masks"])
    np.testing.assert_array_equal(
        masks, targets[np.asarray(out["intervention_labels"])]
    )
    z = np.asarray(out["original_latents"])
    both = masks[:, 1]
    np.testing.assert_array_equal(z[both, 0, 3], z[both, 1, 3])


def test_sample_pairs_is_deterministic_and_jittable():
    a = scm.sample_pairs(jax.random.key(5), toy_press, 64)
    b = jax.jit(scm.sample_pairs, static_argnums=(1, 2))(
        jax.random.key(5), toy_press, 64
    )
    np.testing.assert_array_equal(a["intervention_labels"], b["intervention_labels"])
    np.testing.assert_allclose(a["original_latents"], b["original_latents"], atol=1e-6)


# --- Bad input. ---


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: scm.solve(np.zeros((2, 3)), np.zeros((2, 3))), "noise"),
        (lambda: scm.solve(np.zeros((2, 4)), np.zeros((2, 4))), "pressed"),
        (lambda: scm.solve(np.zeros(4), np.zeros(3), do_mask=np.zeros(4)), "do_value"),
        (lambda: scm.noise_encoding(np.zeros((2, 5)), np.zeros((2, 3))), "latents"),
        (lambda: scm.sample_pairs(jax.random.key(0), toy_press, 0), "n"),
        (lambda: scm.sample_pairs(jax.random.key(0), toy_press, -3), "n"),
        (lambda: scm.sample_pairs(jax.random.key(0), toy_press, 2.5), "n"),
        (
            lambda: scm.sample_pairs(
                jax.random.key(0), toy_press, 4, label_probs=[0.5, 0.6, -0.1, 0, 0]
            ),
            "label_probs",
        ),
        (
            lambda: scm.sample_pairs(
                jax.random.key(0), toy_press, 4, label_probs=[0.2, 0.2, 0.2, 0.2, 0.1]
            ),
            "label_probs",
        ),
        (
            lambda: scm.sample_pairs(
                jax.random.key(0), toy_press, 4, label_probs=[1.0]
            ),
            "label_probs",
        ),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_vmap_and_leading_batch_axes_agree(x64):
    rng = np.random.default_rng(6)
    noise, pressed = random_inputs(rng, 24, np.float64)
    flat = np.asarray(scm.solve(noise, pressed))
    mapped = jax.vmap(scm.solve)(noise, pressed)
    shaped = scm.solve(noise.reshape(2, 3, 4, 4), pressed.reshape(2, 3, 4, 3))
    np.testing.assert_allclose(mapped, flat, rtol=0, atol=1e-14)
    np.testing.assert_allclose(shaped.reshape(24, 4), flat, rtol=0, atol=1e-14)

    encoded = jax.jit(jax.vmap(scm.noise_encoding))(flat, pressed)
    want = ref_noise_encoding(flat, pressed)
    np.testing.assert_allclose(encoded, want, rtol=0, atol=TOL[np.float64])
