"""Test-wide settings: strict JAX numerics and shared fixtures."""

import jax
import pytest

# Silent rank promotion hides shape bugs; make it an error, as the library's
# own code must never rely on it.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Run a test body with JAX's 64-bit mode on, restoring it afterwards."""
    with jax.enable_x64(True):
        yield
