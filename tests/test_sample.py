"""The public sampler and counterfactuals, with the real robot presses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ccjax
from ccjax import physics, scm
from tests.spec_reference import ref_noise_encoding, ref_solve

N_PAIRS = 2000
TOL64 = 1e-12
# Counterfactuals abduct the noise through the CDF and solve again, so they
# agree with the sampler's after-states to round-off of that round trip.
COUNTERFACTUAL_TOL = 1e-10


@pytest.fixture(scope="module")
def batch64():
    with jax.enable_x64(True):
        batch = jax.jit(ccjax.sample, static_argnums=1)(jax.random.key(7), N_PAIRS)
        return jax.tree.map(np.asarray, batch)


@pytest.fixture(scope="module")
def physics64(batch64):
    """The presses and joint angles of both states, computed independently."""
    arm = batch64.original_latents[..., scm.ARM]
    with jax.enable_x64(True):
        press, qpos = jax.jit(lambda a: (physics.press(a), physics.arm_qpos(a)))(arm)
        return np.asarray(press), np.asarray(qpos)


def test_batch_fields_shapes_dtypes_and_ranges(batch64):
    assert isinstance(batch64, ccjax.Batch)
    assert len(batch64) == N_PAIRS
    expected = {
        "original_latents": ((N_PAIRS, 2, 4), np.float64),
        "epsilon": ((N_PAIRS, 2, 4), np.float64),
        "pressed": ((N_PAIRS, 2, 3), np.float64),
        "intervention_labels": ((N_PAIRS,), np.int64),
        "intervention_masks": ((N_PAIRS, 4), np.bool_),
        "qpos": ((N_PAIRS, 2, 3), np.float64),
    }
    for name, (shape, dtype) in expected.items():
        value = getattr(batch64, name)
        assert value.shape == shape, name
        assert value.dtype == dtype, name
    for name in ("original_latents", "epsilon", "pressed"):
        value = getattr(batch64, name)
        assert value.min() >= 0 and value.max() <= 1, name
    labels = batch64.intervention_labels
    assert set(np.unique(labels)) == set(range(5))
    np.testing.assert_array_equal(batch64.intervention_masks, scm.LABEL_TARGETS[labels])


def test_presses_and_joint_angles_follow_the_arm(batch64, physics64):
    press, qpos = physics64
    np.testing.assert_allclose(batch64.pressed, press, rtol=0, atol=TOL64)
    np.testing.assert_allclose(batch64.qpos, qpos, rtol=0, atol=TOL64)
    # Every button gets pressed somewhere in the batch.
    assert np.all(batch64.pressed[:, 0].max(axis=0) == 1)


def test_pairs_follow_the_mechanisms_and_keep_non_descendants(batch64):
    z, eps, pressed = batch64.original_latents, batch64.epsilon, batch64.pressed
    np.testing.assert_allclose(z[:, 0], ref_solve(eps[:, 0], pressed[:, 0]), atol=TOL64)

    masks = batch64.intervention_masks
    after = ref_solve(eps[:, 0], pressed[:, 1], masks, z[:, 1])
    np.testing.assert_allclose(z[:, 1], after, rtol=0, atol=TOL64)
    for label in range(1, 5):
        pick = batch64.intervention_labels == label
        target = label - 1
        unchanged = ~scm.REACHES[target]
        np.testing.assert_array_equal(
            z[pick, 1][:, unchanged], z[pick, 0][:, unchanged]
        )
        encoded = ref_noise_encoding(z[pick, 1], pressed[pick, 1])[:, target]
        np.testing.assert_allclose(eps[pick, 1, target], encoded, atol=TOL64)


def test_counterfactual_reproduces_the_after_states(batch64):
    labels = batch64.intervention_labels
    pick = labels > 0
    target = labels[pick] - 1
    before = batch64.original_latents[pick, 0]
    after = batch64.original_latents[pick, 1]
    value = after[np.arange(len(target)), target]
    with jax.enable_x64(True):
        latents_cf, pressed_cf = jax.jit(ccjax.counterfactual)(before, target, value)
    np.testing.assert_allclose(latents_cf, after, rtol=0, atol=COUNTERFACTUAL_TOL)
    np.testing.assert_array_equal(pressed_cf, batch64.pressed[pick, 1])
    # Non-descendants are copied, not recomputed.
    unchanged = ~scm.REACHES[target]
    np.testing.assert_array_equal(np.asarray(latents_cf)[unchanged], before[unchanged])


def test_counterfactual_of_one_state_with_a_scalar_target():
    latents = jnp.array([0.2, 0.3, 0.4, 0.26])  # the arm on the green button
    latents_cf, pressed_cf = ccjax.counterfactual(latents, scm.ARM, 0.05)
    assert latents_cf.shape == (4,) and pressed_cf.shape == (3,)
    assert float(latents_cf[scm.ARM]) == pytest.approx(0.05)
    np.testing.assert_array_equal(pressed_cf, [0, 0, 0])


def test_sample_inside_a_jitted_training_step():
    def loss(weights, key):
        batch = ccjax.sample(key, 64)
        x = batch.original_latents.reshape(64, 8)
        return jnp.mean((x @ weights - batch.intervention_masks) ** 2)

    step = jax.jit(jax.value_and_grad(loss))
    value, grad = step(jnp.zeros((8, 4)), jax.random.key(0))
    assert grad.shape == (8, 4) and np.isfinite(grad).all()
    assert value.dtype == jnp.float32
    batch = ccjax.sample(jax.random.key(0), 64)
    assert batch.original_latents.dtype == jnp.float32
    assert batch.intervention_labels.dtype == jnp.int32


def test_to_numpy_uses_the_published_dtypes():
    arrays = ccjax.sample(jax.random.key(1), 64).to_numpy()
    assert arrays["original_latents"].dtype == np.float64
    assert arrays["intervention_labels"].dtype == np.int64
    assert arrays["intervention_masks"].dtype == np.bool_


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: ccjax.sample(jax.random.key(0), 0), "n"),
        (lambda: ccjax.counterfactual(jnp.zeros((2, 3)), 0, 0.5), "latents"),
        (lambda: ccjax.counterfactual(jnp.zeros((2, 4)), 4, 0.5), "target"),
        (lambda: ccjax.counterfactual(jnp.zeros((2, 4)), -1, 0.5), "target"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
