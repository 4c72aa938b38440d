"""CPU rendering of CausalCircuit states with MuJoCo, and JPEG encoding.

This module turns host NumPy arrays (finger joint angles, button presses and
light intensities) into 512x512 RGB images and JPEG bytes. It is the only
place in ccjax that touches OpenGL.

Headless OpenGL. MuJoCo picks its OpenGL backend from the ``MUJOCO_GL``
environment variable when ``mujoco`` is first imported, and on a machine
without a display the default (GLFW) cannot open a context. Importing this
module therefore selects a headless backend when the user has not chosen one:
EGL (Debian ``libegl1`` and ``libgl1-mesa-dri``) if its library loads, else
OSMesa (Debian ``libosmesa6``). A value of ``MUJOCO_GL`` set by the user is
always respected. If no context can be created, :class:`SceneRenderer` raises
:class:`GLUnavailableError` with a one-line message naming the packages.

Lamp brightness. The intensity ``z`` in [0, 1] of light k is drawn on the lamp
geometry ``lamp_<colour>`` through its material of the same name:

* colour: ``rgba = LAMP_RGB[k] * (LAMP_DIM + (1 - LAMP_DIM) * z)``, opaque,
  where ``LAMP_RGB[k]`` is the lamp's hue at full intensity (the colour
  written in the scene file is replaced);
* glow: ``emission = LAMP_GLOW * z``.

MuJoCo shades a pixel of the lamp as roughly ``rgba * (emission + lighting)``,
a product of two positive, increasing functions of ``z``, so every lamp pixel
is monotone in ``z`` (strictly, as long as no channel reaches 255), and a model
can read the intensity back from the image. See :func:`lamp_appearance`.

JPEG. Images are encoded with Pillow, whose wheels bundle libjpeg-turbo (3.2
at the time of writing). ``bench/bench_jpeg.py`` compares it with simplejpeg,
which bundles the same library: on rendered frames at quality 95 both write
the same sizes (about 21 KiB per image) and the same fidelity (about 45 dB
PSNR), simplejpeg being faster by about 0.3 ms per image, about 2% of the
time it takes to render that image. Pillow wins by being a dependency already.
PyTurboJPEG 2 needs a system libturbojpeg of version 3 or later, which Debian
12 does not ship, so it cannot be installed with pip alone. The default
quality is :data:`DEFAULT_QUALITY` with 4:2:0 chroma subsampling (Pillow's
default); 4:4:4 keeps colour edges sharper for about 30% more bytes.
"""

from __future__ import annotations

import copy
import ctypes
import importlib
import io
import logging
import os
import sys

import mujoco
import numpy as np
from PIL import Image

__all__ = [
    "DEFAULT_QUALITY",
    "IMAGE_SIZE",
    "LAMP_DIM",
    "LAMP_GLOW",
    "LAMP_NAMES",
    "LAMP_RGB",
    "GLUnavailableError",
    "SceneRenderer",
    "check_gl",
    "encode_jpeg",
    "gl_backend",
    "lamp_appearance",
    "render_pairs_jpeg",
]

logger = logging.getLogger(__name__)

IMAGE_SIZE = 512
"""Width and height of every image, in pixels."""

DEFAULT_QUALITY = 95
"""Default JPEG quality (1-100, libjpeg scale)."""

LAMP_NAMES = ("lamp_red", "lamp_green", "lamp_blue")
"""Lamp geometries (and their materials), in latent order red, green, blue."""

LAMP_DIM = 0.15
"""Fraction of the lamp's base colour shown at intensity 0."""

LAMP_GLOW = 2.0
"""Material emission of a lamp at intensity 1."""

LAMP_RGB = np.array(
    [[0.28, 0.033, 0.023], [0.033, 0.28, 0.047], [0.037, 0.075, 0.28]], dtype=np.float64
)
"""(3, 3) material colour of each lamp (red, green, blue) at intensity 1.

Chosen so that a fully lit lamp, ``LAMP_RGB * (LAMP_GLOW + lighting)`` with
the scene's ambient and diffuse lighting of about 1.15, stays just below
saturation: the brightest channel of every lamp pixel then keeps growing with
the intensity all the way to 1.
"""

# Shared libraries that must load for each headless backend, in the order in
# which backends are tried when MUJOCO_GL is unset.
_HEADLESS_LIBRARIES = {
    "egl": ("libEGL.so.1", "libEGL.so"),
    "osmesa": ("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so"),
}

_INSTALL_HINT = (
    "install the Debian packages libegl1 and libgl1-mesa-dri (MUJOCO_GL=egl) "
    "or libosmesa6 (MUJOCO_GL=osmesa)"
)


class GLUnavailableError(RuntimeError):
    """No headless OpenGL context could be created for MuJoCo's renderer."""


def _loads(names: tuple[str, ...]) -> bool:
    """Whether any of the shared libraries ``names`` can be loaded."""
    for name in names:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


def _select_gl_backend() -> str:
    """Choose MuJoCo's OpenGL backend, unless the user already chose one.

    Returns:
        The backend in effect, the value of ``MUJOCO_GL``.
    """
    if os.environ.get("MUJOCO_GL"):
        logger.debug("MUJOCO_GL=%s set by the user", os.environ["MUJOCO_GL"])
        return os.environ["MUJOCO_GL"]

    backend = next(
        (name for name, libs in _HEADLESS_LIBRARIES.items() if _loads(libs)), None
    )
    if backend is None:
        # Leave mujoco's default; SceneRenderer then fails with the hint.
        logger.debug("MUJOCO_GL unset and neither EGL nor OSMesa loads")
        return ""
    os.environ["MUJOCO_GL"] = backend
    logger.debug("MUJOCO_GL unset; selected %s", backend)

    # mujoco read MUJOCO_GL when it was imported (possibly by another ccjax
    # module, before this one): re-run its context chooser so that the
    # renderer uses the backend just selected.
    chooser = sys.modules.get("mujoco.rendering.classic.gl_context")
    if chooser is not None:
        try:
            importlib.reload(chooser)
        except Exception as err:  # a broken GL stack fails in many ways
            # Importing ccjax must not fail here; creating a renderer will,
            # with the install hint.
            logger.debug("reloading mujoco's GL chooser failed: %s", err)
    return backend


_BACKEND = _select_gl_backend()


def gl_backend() -> str:
    """The OpenGL backend MuJoCo renders with (``egl``, ``osmesa``, ...).

    Empty when ``MUJOCO_GL`` was unset and no headless library loads.
    """
    return _BACKEND


def lamp_appearance(lights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Material colours and emissions that draw the lamps at given intensities.

    Args:
        lights: (..., 3) float, light intensities red, green, blue in [0, 1];
            values outside are clipped.

    Returns:
        ``(rgba, emission)``: (..., 3, 4) float64 opaque material colours
        ``LAMP_RGB * (LAMP_DIM + (1 - LAMP_DIM) * z)``, and (..., 3) float64
        material emissions ``LAMP_GLOW * z``. Both increase with ``z``.
    """
    z = np.clip(np.asarray(lights, dtype=np.float64), 0.0, 1.0)
    rgb = LAMP_RGB * (LAMP_DIM + (1.0 - LAMP_DIM) * z)[..., None]
    alpha = np.ones((*z.shape, 1))
    return np.concatenate([rgb, alpha], axis=-1), LAMP_GLOW * z


class SceneRenderer:
    """Renders CausalCircuit states of one MuJoCo model on the CPU.

    Each instance owns an OpenGL context; use it as a context manager (or call
    :meth:`close`) so that the context is released before the process exits.
    It renders a private copy of ``model``, whose lamp materials (and, if
    asked, anti-aliasing) it edits; the model passed in is left unchanged.

    Args:
        model: the CausalCircuit scene; ``None`` loads it with
            ``ccjax.physics.load_model()``.
        camera: name of the camera to render from.
        shadows: draw the shadows of lights that cast them. On a software
            renderer each such light costs several times the rest of a frame;
            the packaged scene's lights cast none, so there it changes nothing.
        multisamples: anti-aliasing samples per pixel of the offscreen buffer;
            ``None`` keeps the scene file's ``offsamples``, 0 turns it off.

    Raises:
        GLUnavailableError: no headless OpenGL context could be created.
    """

    def __init__(
        self,
        model: mujoco.MjModel | None = None,
        *,
        camera: str = "main",
        shadows: bool = False,
        multisamples: int | None = None,
    ):
        if model is None:
            from ccjax import physics  # the scene's owner; imported on demand

            model = physics.load_model()
        # physics.load_model() shares one model per process: edit a copy.
        model = copy.copy(model)
        if multisamples is not None:
            model.vis.quality.offsamples = multisamples
        self.model = model
        self.data = mujoco.MjData(model)
        self.camera = camera
        self._lamp_materials = np.array(
            [model.material(name).id for name in LAMP_NAMES], dtype=np.int64
        )

        try:
            self._renderer = mujoco.Renderer(model, IMAGE_SIZE, IMAGE_SIZE)
        except Exception as err:  # the GL stack fails with many error types
            cause = str(err).strip().splitlines()[0] if str(err).strip() else ""
            backend = os.environ.get("MUJOCO_GL") or "unset, no EGL or OSMesa found"
            raise GLUnavailableError(
                f"cannot create a headless OpenGL context (MUJOCO_GL={backend}; "
                f"{type(err).__name__}: {cause}); {_INSTALL_HINT}"
            ) from err
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = shadows

    def __enter__(self) -> SceneRenderer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Release the OpenGL context. Safe to call more than once."""
        renderer = getattr(self, "_renderer", None)
        if renderer is not None:
            renderer.close()
            self._renderer = None

    def render(self, qpos: np.ndarray, lights: np.ndarray) -> np.ndarray:
        """Render one state of the scene.

        Args:
            qpos: (nq,) float, full joint configuration of the scene (finger
                and button caps), e.g. from ``ccjax.physics.scene_qpos``.
            lights: (3,) float, light intensities red, green, blue in [0, 1].

        Returns:
            (512, 512, 3) uint8 RGB image.
        """
        if self._renderer is None:
            raise RuntimeError("the renderer has been closed")
        rgba, emission = lamp_appearance(lights)
        self.model.mat_rgba[self._lamp_materials] = rgba
        self.model.mat_emission[self._lamp_materials] = emission

        # Rendering needs body poses, camera and light placement, nothing
        # from dynamics.
        self.data.qpos[:] = qpos
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)

        self._renderer.update_scene(self.data, self.camera)
        return self._renderer.render()

    def segmentation(self, qpos: np.ndarray) -> np.ndarray:
        """Which geometry each pixel shows, for locating objects in images.

        Args:
            qpos: (nq,) float, full joint configuration of the scene.

        Returns:
            (512, 512) int32 geom id per pixel, -1 for the background.
        """
        if self._renderer is None:
            raise RuntimeError("the renderer has been closed")
        self.data.qpos[:] = qpos
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)
        self._renderer.enable_segmentation_rendering()
        try:
            self._renderer.update_scene(self.data, self.camera)
            ids = self._renderer.render()
        finally:
            self._renderer.disable_segmentation_rendering()
        # Channel 0 is the object id, channel 1 its type; keep geoms only.
        geom = ids[..., 1] == mujoco.mjtObj.mjOBJ_GEOM
        return np.where(geom, ids[..., 0], -1).astype(np.int32)


def check_gl() -> None:
    """Open and close a renderer of the packaged scene, to fail early.

    Raises:
        GLUnavailableError: no headless OpenGL context can be created; the
            message names the Debian packages to install.
    """
    with SceneRenderer():
        pass


def encode_jpeg(image: np.ndarray, quality: int = DEFAULT_QUALITY) -> bytes:
    """Encode an RGB image as baseline JPEG.

    Args:
        image: (H, W, 3) uint8 RGB image.
        quality: libjpeg quality, 1 (smallest) to 100 (best).

    Returns:
        The JPEG file's bytes (4:2:0 chroma subsampling, no metadata).
    """
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def render_pairs_jpeg(
    renderer: SceneRenderer,
    scene_qpos: np.ndarray,
    latents: np.ndarray,
    quality: int = DEFAULT_QUALITY,
) -> list[bytes]:
    """Render and JPEG-encode the before and after images of a batch of pairs.

    Args:
        renderer: an open renderer.
        scene_qpos: (n, 2, nq) float, full joint configuration of each state.
        latents: (n, 2, 4) float, latents (red, green, blue, arm) of each state;
            the first three are the light intensities.
        quality: JPEG quality, 1 to 100.

    Returns:
        2n JPEG files, in the order pair 0 before, pair 0 after, pair 1 before...
    """
    n = scene_qpos.shape[0]
    return [
        encode_jpeg(renderer.render(scene_qpos[i, t], latents[i, t, :3]), quality)
        for i in range(n)
        for t in range(2)
    ]
