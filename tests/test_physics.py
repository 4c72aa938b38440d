"""Tests for ccjax.physics: MJX presses against C MuJoCo and the published plateaus.

The reference for every press is C MuJoCo's ``mj_kinematics`` on the same joint
angles, followed by a NumPy implementation of the press rule written from its
definition (not from the library's code). Compiled functions are shared
through module-scoped fixtures, and batch shapes are kept few, because every
new shape costs a compilation.
"""

import copy
import warnings

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from ccjax import physics

# Site positions: MJX in float32 against C MuJoCo in float64, in metres.
POSITION_ATOL_F32 = 2e-6
POSITION_ATOL_F64 = 1e-12
# In its ramp the press changes by about 140 per metre of tip travel, so the
# position tolerances above allow roughly this much difference in the press.
PRESS_ATOL_F32 = 5e-4
PRESS_ATOL_F64 = 1e-9
# Differently shaped or fused compilations round float32 positions differently
# (about 1e-8 m), which the ramp's slope turns into about 1e-6 in the press.
EAGER_ATOL = 1e-5

# Published plateaus (press == 1) in z_A, in variable order, and how closely
# the scene must reproduce their ends.
PLATEAUS = {"red": (0.48, 0.56), "green": (0.228, 0.297), "blue": (0.785, 0.857)}
CALIBRATION_TOL = 0.01
# The press falls to 0 over "a few hundredths" of z_A outside each plateau.
RAMP_MIN, RAMP_MAX = 0.01, 0.05
# Slack for float32 noise when checking that a ramp never turns back.
MONOTONE_SLACK = 1e-5

GRID = np.linspace(-0.1, 1.1, 12001, dtype=np.float32)  # steps of 1e-4


def reference_sites(model, finger_qpos):
    """Fingertip and cap-top positions by C MuJoCo, buttons at rest."""
    data = mujoco.MjData(model)
    finger = [model.joint(name).qposadr[0] for name in physics.FINGER_JOINTS]
    tips, caps = [], []
    for q in np.asarray(finger_qpos, dtype=np.float64):
        data.qpos[:] = model.qpos0
        data.qpos[finger] = q
        mujoco.mj_kinematics(model, data)
        tips.append(data.site("fingertip").xpos.copy())
        caps.append([data.site(f"button_{b}").xpos.copy() for b in physics.BUTTONS])
    return np.array(tips), np.array(caps)


def reference_press(model, tips, caps):
    """The press rule in NumPy, with radii read from the C model."""
    dome = model.site("fingertip").size[0]
    core = np.array([model.site(f"button_{b}").size[0] for b in physics.BUTTONS])
    rim = np.array([model.geom(f"cap_{b}").size[0] for b in physics.BUTTONS])

    horizontal = np.hypot(
        tips[:, None, 0] - caps[:, :, 0], tips[:, None, 1] - caps[:, :, 1]
    )
    ramp = np.clip((rim - horizontal) / (rim - core), 0.0, 1.0)
    lowest_point = tips[:, None, 2] - dome
    touching = lowest_point <= caps[:, :, 2] + physics.CONTACT_TOLERANCE
    return np.where(touching, ramp, 0.0)


def solve_finger(model, targets, iterations=60):
    """Joint angles putting the fingertip at each target, by Gauss-Newton on C MuJoCo.

    An IK independent of the library's closed form, used to build poses that the
    arc never reaches (hovering just above a cap, or off the arc).
    """
    data = mujoco.MjData(model)
    finger = [model.joint(name).qposadr[0] for name in physics.FINGER_JOINTS]
    site = model.site("fingertip").id
    jac = np.zeros((3, model.nv))
    solutions = []
    for target in targets:
        data.qpos[:] = model.qpos0
        data.qpos[finger] = [0.3, 0.9, -1.3]
        for _ in range(iterations):
            mujoco.mj_kinematics(model, data)
            mujoco.mj_comPos(model, data)
            error = target - data.site_xpos[site]
            mujoco.mj_jacSite(model, data, jac, None, site)
            step = np.linalg.lstsq(jac[:, finger], error, rcond=None)[0]
            data.qpos[finger] += step
        mujoco.mj_kinematics(model, data)
        assert np.allclose(data.site_xpos[site], target, atol=1e-10), "IK failed"
        solutions.append(data.qpos[finger].copy())
    return np.array(solutions)


@pytest.fixture(scope="module")
def model():
    return physics.load_model()


@pytest.fixture(scope="module")
def along_arc():
    """Presses, joint angles and tip positions over a dense grid of z_A, jitted."""

    @jax.jit
    def run(arm):
        finger_qpos = physics.arm_qpos(arm)
        return physics.press(arm), finger_qpos, physics.fingertip_pos(finger_qpos)

    return tuple(np.asarray(x) for x in run(jnp.asarray(GRID)))


def test_scene_loads_into_mjx_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = mujoco.MjModel.from_xml_path(str(physics.scene_path()))
        mjx.put_model(model, impl="jax")
        physics.put_scene(model)


def test_scene_honours_name_contract(model):
    hinges = [model.joint(i) for i in range(3)]
    assert [j.name for j in hinges] == list(physics.FINGER_JOINTS)
    assert [int(j.qposadr[0]) for j in hinges] == [0, 1, 2]
    assert all(j.type[0] == mujoco.mjtJoint.mjJNT_HINGE for j in hinges)

    for colour in physics.BUTTONS:
        joint = model.joint(f"button_{colour}")
        assert joint.type[0] == mujoco.mjtJoint.mjJNT_SLIDE, colour
        assert joint.range[0] < 0.0 == joint.range[1], colour
        lamp = model.geom(f"lamp_{colour}")
        assert model.mat(lamp.matid[0]).name == f"lamp_{colour}", colour
        assert model.site(f"button_{colour}").size[0] > 0.0, colour
    lamp_materials = {model.geom(f"lamp_{c}").matid[0] for c in physics.BUTTONS}
    assert len(lamp_materials) == 3, "each lamp needs its own material"

    assert model.camera("main").id >= 0
    assert model.site("fingertip").size[0] == pytest.approx(0.010)
    assert (model.vis.global_.offwidth, model.vis.global_.offheight) == (512, 512)
    assert np.all(model.geom_matid >= 0), "every geom needs a material"
    assert np.all(model.geom_contype == 0) and np.all(model.geom_conaffinity == 0)


def test_scene_path_prefers_installed_package(tmp_path, monkeypatch):
    package = tmp_path / "ccjax"
    monkeypatch.setattr(physics, "__file__", str(package / "physics.py"))
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "scene.xml").write_text("<mujoco/>")
    assert physics.scene_path() == tmp_path / "assets" / "scene.xml"

    (package / "assets").mkdir(parents=True)
    (package / "assets" / "scene.xml").write_text("<mujoco/>")
    assert physics.scene_path() == package / "assets" / "scene.xml"

    (package / "assets" / "scene.xml").unlink()
    (tmp_path / "assets" / "scene.xml").unlink()
    with pytest.raises(FileNotFoundError, match=r"scene\.xml"):
        physics.scene_path()


def test_put_scene_refuses_a_finger_the_ik_cannot_solve(model):
    bent = copy.copy(model)
    bent.jnt_axis[1] = [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="inverse kinematics"):
        physics.put_scene(bent)


def test_press_along_arc_matches_c_mujoco(model, along_arc):
    pressed, finger_qpos, tips = along_arc
    # a spread over the whole grid plus every tenth point inside a ramp
    ramps = np.flatnonzero(np.any((pressed > 0.0) & (pressed < 1.0), axis=1))
    picks = np.union1d(np.linspace(0, len(GRID) - 1, 200).astype(int), ramps[::10])
    assert len(picks) >= 250

    ref_tips, ref_caps = reference_sites(model, finger_qpos[picks])
    np.testing.assert_allclose(
        tips[picks], ref_tips, atol=POSITION_ATOL_F32, err_msg="fingertip"
    )
    np.testing.assert_allclose(
        pressed[picks],
        reference_press(model, ref_tips, ref_caps),
        atol=PRESS_ATOL_F32,
        err_msg="pressed",
    )


def test_fingertip_follows_the_arc(model, along_arc):
    _, finger_qpos, _ = along_arc
    picks = slice(None, None, 40)
    ref_tips, ref_caps = reference_sites(model, finger_qpos[picks])

    centre_x, centre_y, radius, start, end = model.numeric("arm_arc").data
    angle = start + (end - start) * np.clip(GRID[picks], 0.0, 1.0)
    expected_xy = np.stack(
        [centre_x + radius * np.sin(angle), centre_y + radius * np.cos(angle)], -1
    )
    np.testing.assert_allclose(ref_tips[:, :2], expected_xy, atol=POSITION_ATOL_F32)

    # never below a pushed-in cap, never above the hover height
    dome = model.site("fingertip").size[0]
    travel = -model.jnt_range[3:, 0].max()
    cap_top = ref_caps[0, :, 2].max()
    hover = model.numeric("arm_hover").data[0]
    lowest = ref_tips[:, 2] - dome
    assert np.all(lowest >= cap_top - travel - POSITION_ATOL_F32)
    assert np.all(lowest <= cap_top + hover + POSITION_ATOL_F32)


def test_press_from_qpos_matches_c_mujoco_off_the_arc(model):
    # poses above each cap at a few heights and horizontal offsets, solved by an
    # independent IK, plus random joint angles within the limits
    dome = model.site("fingertip").size[0]
    tolerance = physics.CONTACT_TOLERANCE
    targets, expected = [], []
    for i, colour in enumerate(physics.BUTTONS):
        data = mujoco.MjData(model)
        mujoco.mj_kinematics(model, data)
        top = data.site(f"button_{colour}").xpos
        core = model.site(f"button_{colour}").size[0]
        rim = model.geom(f"cap_{colour}").size[0]
        for offset, ramp in [(0.0, 1.0), (0.5 * core, 1.0), (0.5 * (core + rim), 0.5)]:
            for height, touching in [(-0.003, 1), (0.5 * tolerance, 1), (0.002, 0)]:
                targets.append(top + np.array([offset, 0.0, dome + height]))
                expected.append(np.eye(3)[i] * ramp * touching)
    solved = solve_finger(model, np.array(targets))

    rng = np.random.default_rng(0)
    low, high = model.jnt_range[:3, 0], model.jnt_range[:3, 1]
    finger_qpos = np.concatenate([solved, rng.uniform(low, high, (200, 3))])

    run = jax.jit(lambda q: (physics.press_from_qpos(q), physics.fingertip_pos(q)))
    pressed, tips = (np.asarray(x) for x in run(finger_qpos.astype(np.float32)))
    ref_tips, ref_caps = reference_sites(model, finger_qpos.astype(np.float32))
    ref_pressed = reference_press(model, ref_tips, ref_caps)

    np.testing.assert_allclose(tips, ref_tips, atol=POSITION_ATOL_F32)
    np.testing.assert_allclose(pressed, ref_pressed, atol=PRESS_ATOL_F32)
    np.testing.assert_allclose(
        ref_pressed[: len(expected)], expected, atol=1e-3, err_msg="reference rule"
    )


def test_plateaus_reproduce_published_intervals(along_arc):
    pressed, arm = along_arc[0], GRID
    for i, (colour, (low, high)) in enumerate(PLATEAUS.items()):
        inside = (arm >= low + CALIBRATION_TOL) & (arm <= high - CALIBRATION_TOL)
        assert np.all(pressed[inside, i] == 1.0), colour

        plateau = arm[pressed[:, i] == 1.0]
        assert abs(plateau.min() - low) <= CALIBRATION_TOL, (colour, plateau.min())
        assert abs(plateau.max() - high) <= CALIBRATION_TOL, (colour, plateau.max())

        touched = arm[pressed[:, i] > 0.0]
        assert RAMP_MIN <= plateau.min() - touched.min() <= RAMP_MAX, colour
        assert RAMP_MIN <= touched.max() - plateau.max() <= RAMP_MAX, colour

    # at most one button is pressed at a time, and none far from every button
    assert np.all(np.count_nonzero(pressed, axis=1) <= 1)
    far = np.ones_like(arm, dtype=bool)
    for low, high in PLATEAUS.values():
        far &= (arm < low - RAMP_MAX) | (arm > high + RAMP_MAX)
    assert np.all(pressed[far] == 0.0)


def test_ramps_are_monotone(along_arc):
    pressed = along_arc[0]
    for i, (colour, (low, high)) in enumerate(PLATEAUS.items()):
        centre = np.searchsorted(GRID, 0.5 * (low + high))
        rising = np.diff(pressed[:centre, i])
        falling = np.diff(pressed[centre:, i])
        assert np.all(rising >= -MONOTONE_SLACK), colour
        assert np.all(falling <= MONOTONE_SLACK), colour


def test_joint_limits_hold_everywhere(model, along_arc):
    finger_qpos = along_arc[1]
    assert np.all(np.isfinite(finger_qpos))
    low, high = model.jnt_range[:3, 0], model.jnt_range[:3, 1]
    assert np.all(finger_qpos >= low), finger_qpos.min(axis=0)
    assert np.all(finger_qpos <= high), finger_qpos.max(axis=0)


def test_out_of_range_arm_is_clipped_and_nan_propagates(along_arc):
    pressed, finger_qpos, _ = along_arc
    at_zero, at_one = np.searchsorted(GRID, 0.0), np.searchsorted(GRID, 1.0)
    below, above = GRID < 0.0, GRID > 1.0
    np.testing.assert_array_equal(pressed[below], pressed[[at_zero] * below.sum()])
    np.testing.assert_array_equal(pressed[above], pressed[[at_one] * above.sum()])
    np.testing.assert_array_equal(
        finger_qpos[below], finger_qpos[[at_zero] * below.sum()]
    )
    np.testing.assert_array_equal(
        finger_qpos[above], finger_qpos[[at_one] * above.sum()]
    )

    arm = jnp.array([[jnp.nan, 0.5], [-7.0, 7.0]])
    nan_pressed = np.asarray(physics.press(arm))
    assert np.all(np.isnan(nan_pressed[0, 0]))
    assert np.all(np.isnan(np.asarray(physics.arm_qpos(arm))[0, 0]))
    assert np.all(np.isfinite(nan_pressed[1]))


def test_eager_vmap_and_shapes_agree_with_jit(along_arc):
    pressed = along_arc[0]
    picks = np.searchsorted(GRID, [0.1, 0.21, 0.26, 0.47, 0.52, 0.8])
    arm = GRID[picks]

    eager = physics.press(arm.reshape(2, 3))
    assert eager.shape == (2, 3, 3) and eager.dtype == jnp.float32
    np.testing.assert_allclose(eager.reshape(6, 3), pressed[picks], atol=EAGER_ATOL)

    mapped = jax.jit(jax.vmap(physics.press))(arm)
    np.testing.assert_allclose(mapped, pressed[picks], atol=EAGER_ATOL)

    assert physics.press(arm[4]).shape == (3,)
    assert physics.arm_qpos(jnp.zeros((0,))).shape == (0, 3)


def test_float64_matches_c_mujoco(model, x64):
    arm = jnp.linspace(0.0, 1.0, 101, dtype=jnp.float64)
    run = jax.jit(lambda a: (physics.press(a), physics.arm_qpos(a)))
    pressed, finger_qpos = run(arm)
    assert pressed.dtype == jnp.float64 and finger_qpos.dtype == jnp.float64

    ref_tips, ref_caps = reference_sites(model, np.asarray(finger_qpos))
    tips = physics.fingertip_pos(finger_qpos)
    assert tips.dtype == jnp.float64
    np.testing.assert_allclose(tips, ref_tips, atol=POSITION_ATOL_F64)
    np.testing.assert_allclose(
        pressed, reference_press(model, ref_tips, ref_caps), atol=PRESS_ATOL_F64
    )

    # float32 stays float32 with x64 on; integers become the default float
    assert physics.press(np.float32(0.5)).dtype == jnp.float32
    assert physics.press(1).dtype == jnp.float64


def test_scene_qpos_pushes_caps_to_meet_the_tip(model, along_arc):
    pressed, finger_qpos, _ = along_arc
    touching = np.flatnonzero(np.any(pressed > 0.0, axis=1))[::25]
    qpos = physics.scene_qpos(finger_qpos[touching], pressed[touching])
    assert qpos.shape == (len(touching), model.nq) and qpos.dtype == np.float64

    data = mujoco.MjData(model)
    dome = model.site("fingertip").size[0]
    for q, press_row in zip(qpos, pressed[touching], strict=True):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        i = int(np.argmax(press_row))
        cap_top = data.site(f"button_{physics.BUTTONS[i]}").xpos[2]
        lowest = data.site("fingertip").xpos[2] - dome
        # the tip's lowest point sits on the pushed-in cap
        assert lowest == pytest.approx(cap_top, abs=POSITION_ATOL_F32)

    # the pushed-in travel is the press times the joint's full travel
    np.testing.assert_allclose(
        qpos[:, 3:], pressed[touching] * model.jnt_range[3:, 0], atol=1e-12
    )
    broadcast = physics.scene_qpos(finger_qpos[0], np.zeros((4, 3)))
    assert broadcast.shape == (4, model.nq)
