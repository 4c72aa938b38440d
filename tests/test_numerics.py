"""The Beta(1 + 3s, 4 - 3s) quantile and CDF against SciPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from ccjax.numerics import beta_cdf, beta_quantile

# Tolerances on absolute error, per precision.
QUANTILE_TOL = {np.float64: 1e-12, np.float32: 5e-6}
CDF_TOL = {np.float64: 1e-13, np.float32: 5e-6}
# Central finite differences in float64 with step 1e-6 are good to ~1e-8.
GRADIENT_RTOL = 1e-6

# A dense grid over the family and the noise range, with the interval ends.
DRIVES = np.linspace(0, 1, 201)
PROBS = np.concatenate([[0.0], np.linspace(0.001, 0.999, 2495), [1.0]])


def scipy_quantile(u, s):
    return special.betaincinv(1 + 3 * s, 4 - 3 * s, u)


@pytest.fixture(scope="module")
def jitted():
    return jax.jit(beta_quantile), jax.jit(beta_cdf)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_quantile_matches_scipy_on_dense_grid(jitted, dtype):
    s, u = (a.astype(dtype) for a in np.meshgrid(DRIVES, PROBS, indexing="ij"))
    with jax.enable_x64(dtype == np.float64):
        got = np.asarray(jitted[0](u, s))
    assert got.dtype == dtype
    assert np.isfinite(got).all()
    want = scipy_quantile(u.astype(np.float64), s.astype(np.float64))
    err = np.abs(got - want)
    worst = np.unravel_index(err.argmax(), err.shape)
    assert err.max() <= QUANTILE_TOL[dtype], (
        f"max error {err.max():.3g} at s={s[worst]}, u={u[worst]}"
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cdf_matches_scipy_on_dense_grid(jitted, dtype):
    x_grid = np.linspace(0, 1, 2497)
    s, x = (a.astype(dtype) for a in np.meshgrid(DRIVES, x_grid, indexing="ij"))
    with jax.enable_x64(dtype == np.float64):
        got = np.asarray(jitted[1](x, s))
    want = special.betainc(1 + 3 * s.astype(float), 4 - 3 * s.astype(float), x)
    assert np.isfinite(got).all()
    assert np.abs(got - want).max() <= CDF_TOL[dtype]


def test_far_tails_are_finite_and_accurate(x64):
    s, u = np.meshgrid(
        DRIVES, [1e-300, 1e-12, 1e-6, 1 - 1e-6, 1 - 1e-12], indexing="ij"
    )
    got = np.asarray(beta_quantile(u, s))
    assert np.isfinite(got).all()
    assert np.all((got >= 0) & (got <= 1))
    # In the far tails the quantile is ill-conditioned (dx = du / pdf), so
    # compare the CDF of the result with u instead, relative to the tail mass.
    back = special.betainc(1 + 3 * s, 4 - 3 * s, got)
    tail = np.minimum(u, 1 - u)
    assert np.all(np.abs(back - u) <= 1e-9 * tail + 1e-15)


def test_spec_clipping_atoms_are_exact(x64):
    # The published files repeat these float64 values exactly; they come from
    # the noise clip bounds at zero and full drive.
    got = beta_quantile(jnp.array([0.001, 0.001, 0.999]), jnp.array([0.0, 1.0, 1.0]))
    want = [0.0002500938047251259, 0.1778279410038923, 0.9997499061952749]
    assert np.asarray(got).tolist() == want


def test_jit_and_eager_agree(x64):
    rng = np.random.default_rng(0)
    u, s = rng.uniform(size=(2, 64))
    # XLA fuses the jitted version differently, so the two agree to round-off
    # rather than bit for bit.
    for fn in (beta_quantile, beta_cdf):
        np.testing.assert_allclose(fn(u, s), jax.jit(fn)(u, s), rtol=0, atol=1e-14)


def test_cdf_inverts_quantile(x64):
    rng = np.random.default_rng(1)
    u, s = rng.uniform(size=(2, 4096))
    np.testing.assert_allclose(beta_cdf(beta_quantile(u, s), s), u, atol=1e-13)


def test_float32_inputs_stay_float32_under_x64(x64):
    got = beta_quantile(np.float32([0.3]), np.float32([0.5]))
    assert got.dtype == jnp.float32


def test_gradients_match_finite_differences(x64):
    rng = np.random.default_rng(2)
    u = rng.uniform(0.01, 0.99, size=32)
    s = rng.uniform(0.01, 0.99, size=32)
    grad_u, grad_s = jax.vmap(jax.grad(beta_quantile, argnums=(0, 1)))(u, s)
    h = 1e-6
    fd_u = (scipy_quantile(u + h, s) - scipy_quantile(u - h, s)) / (2 * h)
    fd_s = (scipy_quantile(u, s + h) - scipy_quantile(u, s - h)) / (2 * h)
    np.testing.assert_allclose(grad_u, fd_u, rtol=GRADIENT_RTOL)
    np.testing.assert_allclose(grad_s, fd_s, rtol=GRADIENT_RTOL, atol=1e-8)

    grad_x = jax.vmap(jax.grad(beta_cdf))(u, s)
    pdf = np.exp(
        (3 * s) * np.log(u)
        + (3 - 3 * s) * np.log1p(-u)
        - special.betaln(1 + 3 * s, 4 - 3 * s)
    )
    np.testing.assert_allclose(grad_x, pdf, rtol=1e-12)


def test_gradients_are_finite_over_the_grid():
    s, u = np.meshgrid(DRIVES[1:-1:10], PROBS[1:-1:50], indexing="ij")
    s, u = s.astype(np.float32), u.astype(np.float32)
    grads = jax.grad(lambda u, s: beta_quantile(u, s).sum(), argnums=(0, 1))(u, s)
    assert all(np.isfinite(g).all() for g in grads)
