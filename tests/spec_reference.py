"""An independent reference for the tests: the mechanisms in NumPy and SciPy.

Nothing here imports ccjax; the tests compare the library against it.
"""

import numpy as np
from scipy import special


def ref_quantile(u, s):
    return special.betaincinv(1 + 3 * s, 4 - 3 * s, u)


def ref_cdf(x, s):
    return special.betainc(1 + 3 * s, 4 - 3 * s, x)


def ref_solve(noise, pressed, do_mask=None, do_value=None):
    noise = np.asarray(noise, np.float64)
    pressed = np.asarray(pressed, np.float64)
    if do_mask is None:
        do_mask = np.zeros(noise.shape, bool)
        do_value = np.zeros(noise.shape)
    eps = np.clip(noise, 0.001, 0.999)
    arm = np.where(do_mask[:, 3], do_value[:, 3], noise[:, 3])
    green = np.where(
        do_mask[:, 1], do_value[:, 1], ref_quantile(eps[:, 1], pressed[:, 1])
    )
    blue = np.where(
        do_mask[:, 2], do_value[:, 2], ref_quantile(eps[:, 2], pressed[:, 2])
    )
    red_drive = np.minimum(1, pressed[:, 0] + green + blue)
    red = np.where(do_mask[:, 0], do_value[:, 0], ref_quantile(eps[:, 0], red_drive))
    return np.stack([red, green, blue, arm], axis=-1)


def ref_noise_encoding(latents, pressed):
    red_drive = np.minimum(1, pressed[:, 0] + latents[:, 1] + latents[:, 2])
    return np.stack(
        [
            ref_cdf(latents[:, 0], red_drive),
            ref_cdf(latents[:, 1], pressed[:, 1]),
            ref_cdf(latents[:, 2], pressed[:, 2]),
            latents[:, 3],
        ],
        axis=-1,
    )
