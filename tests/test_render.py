"""Rendering: image format, lamp brightness read back from pixels, JPEG, GL."""

import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from ccjax import physics, render

# Decoded JPEG at the default quality against the raw render: below this PSNR
# (dB) the encoder or its settings changed. Measured about 45.6 dB.
MIN_PSNR_DB = 42.0
# The mean of a lamp's own colour channel over its pixels must grow by at
# least this many 8-bit levels per step of 0.2 in intensity.
MIN_LAMP_STEP = 5.0
# Pixels this close to a lamp's silhouette may blend its colour through
# anti-aliasing; everything farther away must not change with its intensity.
HALO_PX = 2

SWEEP = np.linspace(0.0, 1.0, 6)


@pytest.fixture(scope="module")
def model():
    return physics.load_model()


@pytest.fixture(scope="module")
def renderer(model):
    with render.SceneRenderer(model) as r:
        yield r


@pytest.fixture(scope="module")
def rest_qpos(model):
    """Finger over the middle of the arc, red cap half pushed in."""
    finger = np.asarray(physics.arm_qpos(np.float64(0.5)), dtype=np.float64)
    return physics.scene_qpos(finger, np.array([0.5, 0.0, 0.0]), model)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    grown = mask.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            grown |= np.roll(mask, (dy, dx), axis=(0, 1))
    return grown


def test_render_is_512_rgb_uint8_and_deterministic(renderer, rest_qpos):
    lights = np.array([0.2, 0.5, 0.9])
    first = renderer.render(rest_qpos, lights)
    assert first.shape == (512, 512, 3)
    assert first.dtype == np.uint8
    np.testing.assert_array_equal(renderer.render(rest_qpos, lights), first)


def test_finger_pose_and_presses_change_the_image(renderer, model):
    arm = np.array([0.1, 0.52])
    finger = np.asarray(physics.arm_qpos(arm), dtype=np.float64)
    lights = np.full(3, 0.5)
    up = physics.scene_qpos(finger, np.zeros((2, 3)), model)
    moved = renderer.render(up[0], lights) != renderer.render(up[1], lights)
    assert moved.any(axis=-1).sum() > 1000, "moving the finger barely changes pixels"

    # Pushing the red cap in moves the cap's pixels and nothing far from it.
    pushed = physics.scene_qpos(finger[1], np.array([1.0, 0.0, 0.0]), model)
    seg = renderer.segmentation(up[1])
    cap = _dilate(seg == model.geom("cap_red").id, 6)
    changed = np.any(
        renderer.render(up[1], lights) != renderer.render(pushed, lights), axis=-1
    )
    assert changed[cap].sum() > 20, "a pushed-in cap is not drawn lower"
    assert not changed[~cap].any(), "pushing the red cap changed pixels elsewhere"


@pytest.mark.parametrize("lamp", range(3), ids=["red", "green", "blue"])
def test_lamp_pixels_grow_with_its_intensity_only(renderer, model, rest_qpos, lamp):
    seg = renderer.segmentation(rest_qpos)
    mask = seg == model.geom(render.LAMP_NAMES[lamp]).id
    assert mask.sum() > 300, "lamp barely visible from the camera"
    halo = _dilate(mask, HALO_PX)

    images = []
    for z in SWEEP:
        lights = np.array([0.3, 0.6, 0.4])
        lights[lamp] = z
        images.append(renderer.render(rest_qpos, lights).astype(np.int64))
    images = np.stack(images)

    # Monotone per pixel and channel, on and around the lamp.
    steps = np.diff(images[:, halo], axis=0)
    assert (steps >= 0).all(), "a lamp pixel got darker as its intensity grew"
    # Its own colour channel, averaged over the lamp, grows strictly, and
    # stays below saturation so that the top of the range is readable too.
    own = images[:, mask, lamp].mean(axis=1)
    assert np.all(np.diff(own) >= MIN_LAMP_STEP), own
    assert np.percentile(images[-1, mask, lamp], 90) < 255
    # Nothing else in the image depends on this lamp.
    assert (images[:, ~halo] == images[0, ~halo]).all()


def test_lamp_appearance_endpoints_follow_the_documented_formula():
    rgba, emission = render.lamp_appearance(np.array([[0.0, 0.5, 1.0]]))
    assert rgba.shape == (1, 3, 4) and emission.shape == (1, 3)
    np.testing.assert_allclose(rgba[0, 0, :3], render.LAMP_DIM * render.LAMP_RGB[0])
    np.testing.assert_allclose(
        rgba[0, 1, :3], (render.LAMP_DIM + 1) / 2 * render.LAMP_RGB[1]
    )
    np.testing.assert_allclose(rgba[0, 2, :3], render.LAMP_RGB[2])
    np.testing.assert_array_equal(rgba[..., 3], 1.0)
    glow = render.LAMP_GLOW
    np.testing.assert_allclose(emission[0], [0.0, glow / 2, glow])


def test_jpeg_decodes_like_the_reference_loader(renderer, rest_qpos):
    raw = renderer.render(rest_qpos, np.array([1.0, 0.0, 0.5]))
    data = render.encode_jpeg(raw)
    # The authors' loader: PIL open, np.array, divide by 255, no resizing.
    pixels = np.array(Image.open(io.BytesIO(data)))
    assert pixels.shape == (512, 512, 3) and pixels.dtype == np.uint8
    image = pixels / 255
    assert image.min() >= 0 and image.max() <= 1
    mse = np.mean((pixels.astype(np.float64) - raw) ** 2)
    assert 10 * np.log10(255**2 / mse) > MIN_PSNR_DB


def test_jpeg_quality_trades_size(renderer, rest_qpos):
    raw = renderer.render(rest_qpos, np.full(3, 0.5))
    sizes = [len(render.encode_jpeg(raw, quality=q)) for q in (50, 80, 95)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_renderer_leaves_the_shared_model_unchanged(model, rest_qpos):
    rgba, emission = model.mat_rgba.copy(), model.mat_emission.copy()
    samples = model.vis.quality.offsamples
    with render.SceneRenderer(model, multisamples=0) as renderer:
        renderer.render(rest_qpos, np.ones(3))
    np.testing.assert_array_equal(model.mat_rgba, rgba)
    np.testing.assert_array_equal(model.mat_emission, emission)
    assert model.vis.quality.offsamples == samples


def test_closed_renderer_refuses_to_render(model, rest_qpos):
    renderer = render.SceneRenderer(model)
    renderer.close()
    renderer.close()  # a second close is harmless
    with pytest.raises(RuntimeError, match="closed"):
        renderer.render(rest_qpos, np.zeros(3))


def _run(code: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_headless_backend_is_chosen_even_after_mujoco_was_imported():
    # Another module may import mujoco before ccjax.render sets MUJOCO_GL.
    result = _run(
        """
        import mujoco
        import numpy as np
        from ccjax import render
        with render.SceneRenderer() as r:
            image = r.render(r.model.qpos0, np.zeros(3))
        print(render.gl_backend(), image.shape)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] in {
        "egl (512, 512, 3)",
        "osmesa (512, 512, 3)",
    }


def test_missing_gl_gives_one_line_install_hint():
    # libglvnd finds no EGL driver here: what a machine without Mesa's EGL
    # driver (Debian libegl-mesa0, pulled in by libgl1-mesa-dri) looks like.
    result = _run(
        """
        from ccjax import render
        try:
            render.SceneRenderer()
        except render.GLUnavailableError as err:
            print(str(err))
        """,
        __EGL_VENDOR_LIBRARY_FILENAMES="/nonexistent/egl_vendor.json",
    )
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip().splitlines()[-1]
    assert message.startswith("cannot create a headless OpenGL context")
    assert "libegl1" in message and "libosmesa6" in message
