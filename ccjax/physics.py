"""The scene, the finger's path along the arc, and the button presses.

The arm position ``z_A`` in [0, 1] is a point on a horizontal circular arc above
the three buttons (green, red, blue in that order along the arc). This module
turns it into the finger's three joint angles by closed-form inverse kinematics,
then runs MuJoCo MJX's forward kinematics on the scene and reads off how far
each button is pressed from where the fingertip is relative to each cap:

* 0 while the tip is not down on the cap,
* 1 while the tip's centre is within the cap's central zone (radius ``r_core``),
* linear in the horizontal distance ``d`` from the cap's centre in between,
  reaching 0 at the cap's rim (radius ``r_edge``).

The path dips the tip onto each cap and pushes it in by the press times the
button's travel, so a rendered pressed button is in contact with the tip. The
arc, the button positions and the zone radii live in ``assets/scene.xml``,
which documents how they are calibrated to the published press plateaus.

Only forward kinematics runs on device: presses need positions, not forces, and
MJX's contact solver costs about ninety times as much on a CPU. Everything is
pure JAX without host callbacks, so the same code runs on CPU, GPU and TPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

# MJX prints a notice on import when its optional Warp backend is absent. This
# library never uses Warp and keeps stdout for its callers, so the notice goes
# to the debug log instead.
with contextlib.redirect_stdout(io.StringIO()) as _import_notice:
    from mujoco import mjx
if _import_notice.getvalue():
    logging.debug("mujoco.mjx import: %s", _import_notice.getvalue().strip())

# Button order everywhere in this module is the SCM's variable order.
BUTTONS = ("red", "green", "blue")
FINGER_JOINTS = ("finger_upper", "finger_middle", "finger_lower")

# How far above the cap's top the tip's lowest point may be and still count as
# touching the cap, in metres. The path never hovers this low over a cap, so
# the value only matters for joint angles that do not come from the path.
CONTACT_TOLERANCE = 1e-3


def scene_path() -> Path:
    """Locate the scene file, in an installed wheel or in a source checkout.

    Returns:
        Path to ``scene.xml``: ``ccjax/assets/scene.xml`` inside an installed
        package, else ``assets/scene.xml`` at the root of the checkout.

    Raises:
        FileNotFoundError: if neither location holds the scene.
    """
    package = Path(__file__).resolve().parent
    for folder in (package / "assets", package.parent / "assets"):
        if (folder / "scene.xml").is_file():
            return folder / "scene.xml"
    raise FileNotFoundError(
        f"scene.xml not found in {package / 'assets'} or {package.parent / 'assets'}"
    )


@functools.cache
def load_model() -> mujoco.MjModel:
    """Load the scene onto the host once per process.

    Returns:
        The compiled ``mujoco.MjModel``. It is shared: copy it before editing.
    """
    path = scene_path()
    logging.debug("loading scene from %s", path)
    return mujoco.MjModel.from_xml_path(str(path))


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=[
        "mjx_model",
        "mjx_data",
        "upper_joint_pos",
        "middle_offset",
        "link_lengths",
        "lateral_offset",
        "arc_centre",
        "arc_radius",
        "arc_angles",
        "hover",
        "lift",
        "cap_xy",
        "contact_height",
        "travel",
        "core_radius",
        "edge_radius",
        "dome_radius",
    ],
    meta_fields=["finger_qposadr", "fingertip_site", "button_sites"],
)
@dataclasses.dataclass(frozen=True)
class Scene:
    """Device-side constants of the scene: the MJX model and the arm's path.

    Build it with :func:`put_scene`. Lengths are in metres, angles in radians;
    every per-button array follows :data:`BUTTONS` (red, green, blue).

    Attributes:
        mjx_model: the scene as an ``mjx.Model``.
        mjx_data: an ``mjx.Data`` at the scene's rest pose, used as a template.
        upper_joint_pos: (3,) world position of the upper joint.
        middle_offset: (2,) y and z of the middle joint in the upper link's frame.
        link_lengths: (2,) middle-to-lower joint and lower-joint-to-tip lengths.
        lateral_offset: () x of the fingertip in the upper link's frame; the
            middle and lower joints only move the tip within that plane.
        arc_centre: (2,) x and y of the arc's centre.
        arc_radius: () radius of the arc.
        arc_angles: (2,) angle of the arc at z_A = 0 and at z_A = 1, measured
            about +z from the +y axis towards the +x axis.
        hover: () height of the tip's lowest point above the caps between buttons.
        lift: () horizontal distance beyond a cap's rim over which the tip rises.
        cap_xy: (3, 2) x and y of each cap's centre.
        contact_height: (3,) height of the tip's centre when it rests on a cap.
        travel: (3,) how far each cap moves when fully pressed.
        core_radius: (3,) radius of each cap's central zone where the press is 1.
        edge_radius: (3,) radius of each cap, where the press reaches 0.
        dome_radius: () radius of the fingertip's dome.
        finger_qposadr: qpos indices of the upper, middle and lower joints.
        fingertip_site: index of the ``fingertip`` site.
        button_sites: indices of the ``button_*`` sites at each cap's top centre.
    """

    mjx_model: mjx.Model
    mjx_data: mjx.Data
    upper_joint_pos: jax.Array
    middle_offset: jax.Array
    link_lengths: jax.Array
    lateral_offset: jax.Array
    arc_centre: jax.Array
    arc_radius: jax.Array
    arc_angles: jax.Array
    hover: jax.Array
    lift: jax.Array
    cap_xy: jax.Array
    contact_height: jax.Array
    travel: jax.Array
    core_radius: jax.Array
    edge_radius: jax.Array
    dome_radius: jax.Array
    finger_qposadr: tuple[int, ...]
    fingertip_site: int
    button_sites: tuple[int, ...]


def _finger_frames(model: mujoco.MjModel) -> dict[str, np.ndarray]:
    """Read the finger's link offsets and check the IK's assumptions on them."""
    links = ("upper", "middle", "lower", "tip")
    body = {link: model.body(f"finger_{link}_link") for link in links}
    axes = [model.joint(name).axis for name in FINGER_JOINTS]
    anchors = [model.joint(name).pos for name in FINGER_JOINTS]
    tip = body["tip"].pos + model.site("fingertip").pos
    identity = np.array([1.0, 0.0, 0.0, 0.0])

    # the closed form below solves exactly this chain: an upper joint about +y
    # hanging from the world, then two joints about +x whose links point
    # straight down at zero angle; anything else needs a different solver
    expected_axes = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    parents = [b.parentid[0] for b in body.values()]
    chain = [0, body["upper"].id, body["middle"].id, body["lower"].id]
    ok = (
        parents == chain
        and model.site("fingertip").bodyid[0] == body["tip"].id
        and all(np.allclose(b.quat, identity) for b in body.values())
        and np.allclose(axes, expected_axes)
        and np.allclose(anchors, 0.0)
        and np.allclose([body["lower"].pos[1], tip[1]], 0.0)
        and body["lower"].pos[2] < 0.0
        and tip[2] < 0.0
    )
    if not ok:
        raise ValueError(
            "the finger in the scene does not match the FingerPro chain that the "
            "closed-form inverse kinematics solves (upper joint about +y, middle "
            "and lower joints about +x, links straight down at zero angle)"
        )
    return {
        "upper_joint_pos": body["upper"].pos,
        "middle_offset": body["middle"].pos[1:],
        "link_lengths": -np.array([body["lower"].pos[2], tip[2]]),
        "lateral_offset": body["middle"].pos[0] + body["lower"].pos[0] + tip[0],
    }


def _button_geometry(model: mujoco.MjModel) -> dict[str, np.ndarray]:
    """Read each cap's position at rest, its zone radii and its travel."""
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    tops = np.array([data.site(f"button_{b}").xpos for b in BUTTONS])
    dome = model.site("fingertip").size[0]
    travel = np.array([-model.joint(f"button_{b}").range[0] for b in BUTTONS])
    if np.any(travel <= 0.0):
        raise ValueError("button joints must allow negative travel (caps pushed in)")
    return {
        "cap_xy": tops[:, :2],
        "contact_height": tops[:, 2] + dome,
        "travel": travel,
        "core_radius": np.array([model.site(f"button_{b}").size[0] for b in BUTTONS]),
        "edge_radius": np.array([model.geom(f"cap_{b}").size[0] for b in BUTTONS]),
        "dome_radius": dome,
    }


def _arc(model: mujoco.MjModel) -> dict[str, np.ndarray]:
    """Read the arm's path settings from the scene's custom numeric fields."""
    centre_x, centre_y, radius, start, end = model.numeric("arm_arc").data
    return {
        "arc_centre": np.array([centre_x, centre_y]),
        "arc_radius": radius,
        "arc_angles": np.array([start, end]),
        "hover": model.numeric("arm_hover").data[0],
        "lift": model.numeric("arm_lift").data[0],
    }


def _cast_floats(tree, dtype):
    """Cast every floating-point leaf of a pytree to ``dtype``."""

    def cast(leaf):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.astype(dtype)
        return leaf

    return jax.tree.map(cast, tree)


def put_scene(model: mujoco.MjModel | None = None, dtype=None) -> Scene:
    """Move the scene's constants from a host model onto the default device.

    Args:
        model: the scene; defaults to :func:`load_model`.
        dtype: floating-point dtype of the constants; defaults to JAX's default
            float (float32, or float64 when ``jax_enable_x64`` is on).

    Returns:
        A :class:`Scene` whose floating-point leaves all have ``dtype``.

    Raises:
        ValueError: if the scene breaks the assumptions of the path or the IK.
    """
    model = load_model() if model is None else model
    dtype = jax.dtypes.canonicalize_dtype(float if dtype is None else dtype)

    # force the pure-JAX implementation so that the same code runs everywhere
    mjx_model = mjx.put_model(model, impl="jax")
    mjx_data = mjx.make_data(mjx_model, impl="jax")
    constants = _finger_frames(model) | _button_geometry(model) | _arc(model)
    constants = {k: jnp.asarray(v, dtype) for k, v in constants.items()}

    return Scene(
        mjx_model=_cast_floats(mjx_model, dtype),
        mjx_data=_cast_floats(mjx_data, dtype),
        finger_qposadr=tuple(int(model.joint(j).qposadr[0]) for j in FINGER_JOINTS),
        fingertip_site=model.site("fingertip").id,
        button_sites=tuple(model.site(f"button_{b}").id for b in BUTTONS),
        **constants,
    )


@functools.cache
def _default_scene(dtype: str) -> Scene:
    """The scene from :func:`load_model`, built once per dtype."""
    # the first call may come from inside jit; build concrete arrays even then,
    # since the cache keeps them for later traces
    with jax.ensure_compile_time_eval():
        return put_scene(load_model(), dtype)


def _prepare(x, scene: Scene | None) -> tuple[jax.Array, Scene]:
    """Give ``x`` a float dtype and return it with a scene of the same dtype."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        # half precision is too coarse for millimetre geometry
        dtype = jnp.promote_types(x.dtype, jnp.float32)
    else:
        dtype = jax.dtypes.canonicalize_dtype(float)
    x = x.astype(dtype)
    if scene is None:
        return x, _default_scene(dtype.name)
    return x, _cast_floats(scene, dtype)


def _ramp(distance: jax.Array, core: jax.Array, edge: jax.Array) -> jax.Array:
    """1 inside the central zone, falling linearly to 0 at the cap's rim."""
    return jnp.clip((edge - distance) / (edge - core), 0.0, 1.0)


def _path(arm: jax.Array, scene: Scene) -> jax.Array:
    """Fingertip centre for arm positions in [0, 1]: (n,) -> (n, 3)."""
    start, end = scene.arc_angles[0], scene.arc_angles[1]
    angle = start + (end - start) * arm
    offset = jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1)
    xy = scene.arc_centre[None, :] + scene.arc_radius * offset

    # near a cap the tip sinks in by the press it causes, so that the pushed-in
    # cap and the tip touch; past the rim it rises smoothly to the hover height
    distance = jnp.linalg.norm(xy[:, None, :] - scene.cap_xy[None], axis=-1)
    ramp = _ramp(distance, scene.core_radius[None, :], scene.edge_radius[None, :])
    rise = (distance - scene.edge_radius[None, :]) / scene.lift
    rise = jnp.clip(rise, 0.0, 1.0)
    rise = scene.hover * rise * rise * (3.0 - 2.0 * rise)
    height = scene.contact_height[None, :] - scene.travel[None, :] * ramp + rise

    return jnp.concatenate([xy, jnp.min(height, axis=-1, keepdims=True)], axis=-1)


def _inverse_kinematics(tip: jax.Array, scene: Scene) -> jax.Array:
    """Joint angles that put the fingertip centre at ``tip``: (n, 3) -> (n, 3).

    The upper joint turns the plane x = lateral_offset of the upper link's frame
    about the world's y axis; within that plane the middle and lower joints form
    a planar two-link arm hanging down, bent with the lower joint negative.
    """
    rel = tip - scene.upper_joint_pos[None, :]
    x, y, z = rel[:, 0], rel[:, 1], rel[:, 2]
    lateral = scene.lateral_offset

    # upper joint: rotate the tip's (x, z) into the finger's plane, where its x
    # is the fixed lateral offset and its z (height, negative) follows
    z_plane = -jnp.sqrt(jnp.maximum(x * x + z * z - lateral * lateral, 0.0))
    upper = jnp.arctan2(z_plane * x - lateral * z, lateral * x + z_plane * z)

    # middle and lower joints: the two-link arm reaches sideways (along y)
    # and down (along -z) from the middle joint, elbow bent backwards
    side = y - scene.middle_offset[0]
    down = scene.middle_offset[1] - z_plane
    first, second = scene.link_lengths[0], scene.link_lengths[1]
    cos_lower = (side * side + down * down - first * first - second * second) / (
        2.0 * first * second
    )
    lower = -jnp.arccos(jnp.clip(cos_lower, -1.0, 1.0))
    middle = jnp.arctan2(side, down) - jnp.arctan2(
        second * jnp.sin(lower), first + second * jnp.cos(lower)
    )
    return jnp.stack([upper, middle, lower], axis=-1)


# The kinematics unrolls into thousands of small operations, which run very
# slowly one by one; the public functions below therefore always go through
# these jitted cores on flat batches, also when called outside jit.


@jax.jit
def _arm_qpos_flat(arm: jax.Array, scene: Scene) -> jax.Array:
    """Joint angles for arm positions: (n,) -> (n, 3)."""
    tip = _path(jnp.clip(arm, 0.0, 1.0), scene)
    return _inverse_kinematics(tip, scene)


@jax.jit
def _sites_flat(finger_qpos: jax.Array, scene: Scene) -> tuple[jax.Array, jax.Array]:
    """Fingertip position and presses by MJX kinematics: (n, 3) -> (n, 3), (n, 3).

    The buttons stay at rest here, so the cap sites mark where an unpressed
    cap's top is.
    """
    rest = scene.mjx_data.qpos
    qpos = jnp.broadcast_to(rest[None, :], (finger_qpos.shape[0], rest.shape[0]))
    qpos = qpos.at[:, scene.finger_qposadr].set(finger_qpos)

    def site_xpos(q):
        data = mjx.kinematics(scene.mjx_model, scene.mjx_data.replace(qpos=q))
        return data.site_xpos

    sites = jax.vmap(site_xpos)(qpos)
    tip = sites[:, scene.fingertip_site, :]
    caps = sites[:, scene.button_sites, :]

    distance = jnp.linalg.norm(tip[:, None, :2] - caps[:, :, :2], axis=-1)
    ramp = _ramp(distance, scene.core_radius[None, :], scene.edge_radius[None, :])
    gap = tip[:, None, 2] - scene.dome_radius - caps[:, :, 2]
    pressed = jnp.where(gap <= CONTACT_TOLERANCE, ramp, 0.0)
    # XLA's clip and comparisons turn NaN into numbers; keep bad angles visible
    pressed = jnp.where(jnp.isnan(distance + gap), jnp.nan, pressed)
    return tip, pressed


def arm_qpos(arm, scene: Scene | None = None) -> jax.Array:
    """Finger joint angles for arm positions along the arc.

    Arm positions outside [0, 1] are clipped to it, so the finger stops at the
    ends of the arc; NaN stays NaN. Jittable and vmappable.

    Args:
        arm: (...,) arm positions z_A; any float dtype (ints become float).
        scene: scene constants from :func:`put_scene`; defaults to the packaged
            scene in the input's dtype.

    Returns:
        (..., 3) angles of ``finger_upper``, ``finger_middle``, ``finger_lower``
        in radians, in the input's dtype (at least float32).
    """
    arm, scene = _prepare(arm, scene)
    return _arm_qpos_flat(arm.reshape(-1), scene).reshape(*arm.shape, 3)


def fingertip_pos(finger_qpos, scene: Scene | None = None) -> jax.Array:
    """World position of the fingertip's dome centre by MJX kinematics.

    Args:
        finger_qpos: (..., 3) angles of the upper, middle and lower joints.
        scene: scene constants; defaults to the packaged scene.

    Returns:
        (..., 3) position in metres, in the input's dtype (at least float32).
    """
    finger_qpos, scene = _prepare(finger_qpos, scene)
    tip, _ = _sites_flat(finger_qpos.reshape(-1, 3), scene)
    return tip.reshape(finger_qpos.shape)


def press_from_qpos(finger_qpos, scene: Scene | None = None) -> jax.Array:
    """How far each button is pressed by a finger at the given joint angles.

    Per button: 0 unless the tip's lowest point is down on the cap's top (within
    :data:`CONTACT_TOLERANCE`); otherwise 1 while the tip's centre is within the
    cap's central zone and linear in its horizontal distance from the cap's
    centre down to 0 at the cap's rim. NaN angles give NaN.

    Args:
        finger_qpos: (..., 3) angles of the upper, middle and lower joints.
        scene: scene constants; defaults to the packaged scene.

    Returns:
        (..., 3) presses in [0, 1] for red, green, blue, in the input's dtype.
    """
    finger_qpos, scene = _prepare(finger_qpos, scene)
    _, pressed = _sites_flat(finger_qpos.reshape(-1, 3), scene)
    return pressed.reshape(finger_qpos.shape)


def press(arm, scene: Scene | None = None) -> jax.Array:
    """Button presses for arm positions, from MJX kinematics of the scene.

    Equals ``press_from_qpos(arm_qpos(arm))``; arm positions outside [0, 1] are
    clipped to it. Jittable and vmappable.

    Args:
        arm: (...,) arm positions z_A; any float dtype (ints become float).
        scene: scene constants from :func:`put_scene`; defaults to the packaged
            scene in the input's dtype.

    Returns:
        (..., 3) presses in [0, 1] in variable order (red, green, blue), in the
        input's dtype (at least float32).
    """
    arm, scene = _prepare(arm, scene)
    _, pressed = _sites_flat(_arm_qpos_flat(arm.reshape(-1), scene), scene)
    return pressed.reshape(*arm.shape, 3)


def scene_qpos(
    finger_qpos: np.ndarray,
    pressed: np.ndarray,
    model: mujoco.MjModel | None = None,
) -> np.ndarray:
    """Full host-side qpos that poses the finger and pushes the caps in.

    Args:
        finger_qpos: (..., 3) angles of the upper, middle and lower joints.
        pressed: (..., 3) presses in [0, 1] for red, green, blue; each cap is
            pushed in by its press times the button's travel.
        model: the scene; defaults to :func:`load_model`.

    Returns:
        (..., model.nq) float64 qpos for ``mujoco.MjData.qpos``.
    """
    model = load_model() if model is None else model
    finger_qpos = np.asarray(finger_qpos, dtype=np.float64)
    pressed = np.asarray(pressed, dtype=np.float64)
    batch = np.broadcast_shapes(finger_qpos.shape[:-1], pressed.shape[:-1])

    qpos = np.broadcast_to(model.qpos0, (*batch, model.nq)).copy()
    finger = [model.joint(j).qposadr[0] for j in FINGER_JOINTS]
    buttons = [model.joint(f"button_{b}").qposadr[0] for b in BUTTONS]
    lowest = np.array([model.joint(f"button_{b}").range[0] for b in BUTTONS])
    qpos[..., finger] = finger_qpos
    qpos[..., buttons] = pressed * lowest
    return qpos
