# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A tour of ccjax
#
# CausalCircuit is a benchmark for causal representation learning: pairs of
# 512x512 images of a robot finger above three buttons that drive three lights,
# before and after an intervention on one of four causal variables. ccjax
# generates it in JAX. This tour walks the data's path once:
#
# 1. sample a batch of pairs on the device,
# 2. look at the causal graph,
# 3. look at the distributions the model produces,
# 4. render one pair per kind of intervention,
# 5. ask a counterfactual question,
# 6. write a tiny dataset to disk and read it back as a training loop would.
#
# Sizes are kept small so that the whole tour runs in a couple of minutes on a
# laptop CPU; most of that time is JAX compiling, once per array shape.
#
# This file is a [jupytext](https://jupytext.readthedocs.io) notebook: with
# jupytext installed, Jupyter opens it as a notebook, and
# `pytest tests/test_notebook.py` runs it headless. Run it in a Jupyter kernel
# rather than with plain `python`: the exporter in section 6 starts worker
# processes that re-import the main script, which would rerun the whole tour.

# %%
import io
import sys
import tempfile
from pathlib import Path

import matplotlib

# In a Jupyter kernel figures are drawn into the notebook. Anywhere else (cells
# pasted into a terminal on a server, say) there may be no screen: draw
# off-screen instead of trying to open windows.
if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

import ccjax
from ccjax import export, physics, render

VARIABLES = ccjax.VARIABLES  # ("red", "green", "blue", "arm"): the latent order
LABEL_NAMES = ("none", "red", "green", "blue", "arm")  # intervention labels 0-4
COLOURS = ("tab:red", "tab:green", "tab:blue", "tab:gray")

# %% [markdown]
# ## 1. Sampling pairs
#
# `ccjax.sample(key, n)` draws `n` pairs: for each, fresh noise, the state it
# produces ("before"), a random intervention label, and the state after that
# intervention. It is pure JAX, so it can be jitted (with `n` static, since it
# fixes the array shapes) and even called inside a jitted training step.
#
# Every new `n` means a new compilation, so this tour samples once, with enough
# pairs for smooth histograms, and reuses that batch throughout.

# %%
N_PAIRS = 3000

sample = jax.jit(ccjax.sample, static_argnums=1)
key_pairs, key_spare = jax.random.split(jax.random.key(0))
batch = sample(key_pairs, N_PAIRS)

# Copy to host memory once, in the dtypes of the published files (float64,
# int64, bool); everything below that is not JAX works on these arrays.
pairs = batch.to_numpy()
latents = pairs["original_latents"]  # (n, 2, 4): pair axis is before, after
labels = pairs["intervention_labels"]  # (n,)
masks = pairs["intervention_masks"]  # (n, 4)

print(f"{len(batch)} pairs on {jax.devices()[0].platform}")
for name, value in pairs.items():
    print(f"  {name:20s} {value.shape!s:12s} {value.dtype}")
counts = np.bincount(labels, minlength=len(LABEL_NAMES))
print("pairs per label:", dict(zip(LABEL_NAMES, counts.tolist(), strict=True)))

first = 0
print(f"\npair {first}: intervention on {LABEL_NAMES[labels[first]]}")
for state, row in zip(("before", "after"), latents[first], strict=True):
    values = zip(VARIABLES, row, strict=True)
    print(f"  {state:6s}", "  ".join(f"{v} {z:.3f}" for v, z in values))

# %% [markdown]
# An intervention replaces one variable's mechanism by a fresh uniform value
# and keeps every other variable's noise. So a variable that is neither the
# target nor downstream of it must come out bit-identical. The descendants are
# read off the adjacency matrix (powers of it count paths), and the batch is
# checked against them.

# %%
adjacency = np.asarray(ccjax.ADJACENCY)  # adjacency[i, j] = 1: i causes j
n_vars = len(VARIABLES)
# (I + A)^(n-1) has a non-zero (i, j) entry exactly when j is i or downstream of i.
reaches = np.linalg.matrix_power(np.eye(n_vars, dtype=int) + adjacency, n_vars - 1) > 0
may_change = (masks[:, :, None] & reaches[None]).any(axis=1)  # (n, 4)
unchanged = latents[:, 0] == latents[:, 1]
assert np.all(unchanged[~may_change]), "a non-descendant of the target moved"
print(f"{(~may_change).sum()} latents outside the target's reach: all identical")

# %% [markdown]
# ## 2. The causal graph
#
# The arm (A) presses the buttons, each button drives its own light, and the
# green (G) and blue (B) lights also drive the red one (R). `ccjax.ADJACENCY`
# holds this graph in the latent order; the drawing below is made from it, so
# it shows what the library uses, not a copy.

# %%
positions = {"arm": (0.5, 0.0), "green": (0.0, 0.5), "blue": (1.0, 0.5)}
positions["red"] = (0.5, 1.0)
fig, ax = plt.subplots(figsize=(4, 4))
for i, j in zip(*np.nonzero(adjacency), strict=True):
    ax.annotate(
        "",
        xy=positions[VARIABLES[j]],
        xytext=positions[VARIABLES[i]],
        arrowprops={"arrowstyle": "-|>", "lw": 1.5, "shrinkA": 22, "shrinkB": 22},
    )
for name, colour in zip(VARIABLES, COLOURS, strict=True):
    x, y = positions[name]
    ax.add_patch(plt.Circle((x, y), 0.12, color=colour, alpha=0.25))
    ax.text(x, y, name, ha="center", va="center", fontsize=12)
ax.set(xlim=(-0.25, 1.25), ylim=(-0.25, 1.25), aspect="equal")
ax.set_axis_off()
ax.set_title("CausalCircuit's causal graph")
plt.show()

# %% [markdown]
# ## 3. What the model produces
#
# **Latents.** The arm position is uniform on [0, 1]. A light with no drive is
# Beta(1, 4), mostly dark; a fully driven one is Beta(4, 1), mostly bright.
# Green and blue are driven only when the arm presses their buttons, which is
# rare, so they are mostly dark. Red is also driven by the green and blue
# lights, so it is brighter on average. The histograms use the "before" states,
# which follow the model without intervention.

# %%
before = latents[:, 0]
fig, axes = plt.subplots(1, n_vars, figsize=(13, 2.8), sharey=True)
for k, (ax, name, colour) in enumerate(zip(axes, VARIABLES, COLOURS, strict=True)):
    ax.hist(before[:, k], bins=40, range=(0, 1), density=True, color=colour)
    ax.set_title(f"z_{name[0].upper()} ({name})")
    ax.set_xlabel("value")
axes[0].set_ylabel("density")
fig.suptitle(f"latents of {N_PAIRS} states before intervention", y=1.04)
plt.show()

# %% [markdown]
# **Button presses.** The buttons lie along the arm's arc in the order green,
# red, blue. `ccjax.physics.press` poses the finger with inverse kinematics and
# reads off, with MuJoCo MJX's forward kinematics, how far the fingertip pushes
# each button: 1 over the button's centre, falling linearly to 0 at its rim.

# %%
arm_grid = jnp.linspace(0.0, 1.0, 501)
press_curves = np.asarray(physics.press(arm_grid))  # (501, 3): red, green, blue
fig, ax = plt.subplots(figsize=(8, 2.8))
for k, (name, colour) in enumerate(zip(VARIABLES[:3], COLOURS, strict=False)):
    ax.plot(arm_grid, press_curves[:, k], color=colour, label=f"{name} button")
ax.set(xlabel="arm position z_A", ylabel="pressed", xlim=(0, 1))
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
ax.set_title("how far each button is pressed along the arc")
plt.show()

# %% [markdown]
# ## 4. Rendering one pair per intervention
#
# Images are made on the host: `ccjax.physics.scene_qpos` turns the finger's
# joint angles and the presses into a full MuJoCo pose (finger and button caps),
# and a `ccjax.render.SceneRenderer` draws it with the lamps lit according to
# the light intensities. A renderer holds an OpenGL context, so it is used in a
# `with` block that closes it when done.
#
# Below, one pair per label: the intervened variable changes, and so may its
# descendants (an arm move can press a button, which changes that light).

# %%
picks = []
for label in range(len(LABEL_NAMES)):
    (found,) = np.nonzero(labels == label)
    assert found.size, f"no pair with label {label}; sample more pairs"
    picks.append(found[0])
picks = np.array(picks)

# (n, 2, nq) poses of the whole scene, for both states of each picked pair
poses = physics.scene_qpos(pairs["qpos"][picks], pairs["pressed"][picks])
with render.SceneRenderer() as renderer:
    images = [
        [renderer.render(poses[column, t], latents[i, t, :3]) for t in range(2)]
        for column, i in enumerate(picks)
    ]


def caption(z):
    """One line of latents, e.g. 'R 0.12 G 0.03 B 0.40 A 0.77'."""
    values = zip(VARIABLES, z, strict=True)
    return " ".join(f"{v[0].upper()} {x:.2f}" for v, x in values)


# one column per label: the "before" image above, the "after" image below
fig, axes = plt.subplots(2, len(picks), figsize=(3.2 * len(picks), 7))
for column, i in enumerate(picks):
    target = LABEL_NAMES[labels[i]]
    heading = "no intervention" if labels[i] == 0 else f"do({target})"
    for t, state in enumerate(("before", "after")):
        ax = axes[t, column]
        ax.imshow(images[column][t])
        ax.set_title(f"{heading}, {state}\n{caption(latents[i, t])}", fontsize=9)
        ax.set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 5. A counterfactual: what if the green light were 0.9?
#
# Take an observed state in which the green light is dim. A counterfactual
# asks what that very state would have looked like had the green light been
# 0.9. `ccjax.counterfactual` answers in three steps: recover the noise that
# produced the observation, set green to 0.9 in place of its mechanism, and
# re-solve the model with that same noise. The arm and blue light are not
# downstream of green, so they stay exactly as observed; red is driven by
# green, so it brightens, by an amount that depends on this state's own red
# noise.

# %%
GREEN = VARIABLES.index("green")
dim_green = (before[:, GREEN] < 0.2) & (pairs["pressed"][:, 0, GREEN] == 0)
observed_index = int(np.nonzero(dim_green)[0][0])
observed = batch.original_latents[observed_index, 0]  # (4,) on the device

latents_cf, pressed_cf = ccjax.counterfactual(observed, GREEN, 0.9)
observed, latents_cf = np.asarray(observed), np.asarray(latents_cf)
pressed_cf = np.asarray(pressed_cf)

print("            " + "  ".join(f"{v:>6s}" for v in VARIABLES))
for name, z in (("observed", observed), ("green=0.9", latents_cf)):
    print(f"{name:10s}  " + "  ".join(f"{x:6.3f}" for x in z))

assert latents_cf[GREEN] == np.float32(0.9)
for k in (VARIABLES.index("blue"), VARIABLES.index("arm")):
    assert latents_cf[k] == observed[k], f"{VARIABLES[k]} is not downstream of green"
assert latents_cf[0] >= observed[0], "more green drive cannot dim the red light"

# The arm did not move here, but in general a counterfactual can move it (a
# question about the arm), so the finger's pose is recomputed from its value.
poses_cf = physics.scene_qpos(
    np.stack([pairs["qpos"][observed_index, 0], physics.arm_qpos(latents_cf[3])]),
    np.stack([pairs["pressed"][observed_index, 0], pressed_cf]),
)
with render.SceneRenderer() as renderer:
    image_obs = renderer.render(poses_cf[0], observed[:3])
    image_cf = renderer.render(poses_cf[1], latents_cf[:3])

fig, axes = plt.subplots(1, 2, figsize=(8, 4.4))
for ax, image, title, z in zip(
    axes,
    (image_obs, image_cf),
    ("observed", "had green been 0.9"),
    (observed, latents_cf),
    strict=True,
):
    ax.imshow(image)
    ax.set_title(f"{title}\n{caption(z)}", fontsize=9)
    ax.set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6. A tiny dataset on disk, read back as a training loop would
#
# `ccjax.export.export` writes the files of the published dataset: the training
# split as shards `train-0.npz`, `train-1.npz`, ... plus `val.npz` and
# `test.npz`, rendered by a pool of worker processes. The command
# `ccjax generate` does the same from a shell. Here: 8 training pairs in 2
# shards, 2 validation and 2 test pairs, into a temporary directory.
#
# (The exporter samples in float64 and in fixed blocks of pairs, so its pairs
# are not the ones sampled above; they depend only on the seed and on each
# file's place in the dataset.)

# %%
workdir = tempfile.TemporaryDirectory()
out = Path(workdir.name)
config = export.ExportConfig(seed=0, n_train=8, n_val=2, n_test=2, n_shards=2)
summary = export.export(out, config)
print(f"wrote {len(summary.files_written)} files in {summary.seconds:.1f} s")
for path in sorted(out.iterdir()):
    print(f"  {path.name:22s} {path.stat().st_size / 1e3:8.1f} kB")

report = export.validate_file(out / "train-0.npz")
assert report.valid, report.problems
print(f"train-0.npz: {report.n_pairs} pairs, valid")

# %% [markdown]
# `export.contact_sheet` (also `ccjax show` on the command line) draws the
# pairs of a file with their labels and latents: a quick look at a shard.

# %%
sheet = export.contact_sheet(out / "train-0.npz", pairs=4, thumb=192)
fig, ax = plt.subplots(figsize=(9, 9 * sheet.height / sheet.width))
ax.imshow(sheet)
ax.set_axis_off()
plt.show()

# %% [markdown]
# **Loading.** The files hold only plain arrays (images as fixed-width byte
# strings of JPEG data), so `np.load` needs no `allow_pickle`, which would let
# a file run code on load. A PyTorch map-style dataset is just a class with
# `__len__` and `__getitem__`; the one below needs no torch import and decodes
# each JPEG the way the original training code does: Pillow, then divide by
# 255, no resizing.


# %%
def decode(jpeg: bytes) -> np.ndarray:
    """JPEG bytes to a (512, 512, 3) float array in [0, 1]."""
    return np.array(Image.open(io.BytesIO(jpeg))) / 255


class CausalCircuitPairs:
    """The pairs of one npz file, indexable like a PyTorch ``Dataset``."""

    def __init__(self, path):
        with np.load(path) as npz:  # allow_pickle is False by default
            self.imgs = npz["imgs"]  # (n, 2) bytes: JPEG before, after
            self.latents = npz["original_latents"]  # (n, 2, 4)
            self.labels = npz["intervention_labels"]  # (n,)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        before, after = (decode(jpeg) for jpeg in self.imgs[i])
        return {
            "before": before,
            "after": after,
            "latents": self.latents[i],
            "label": self.labels[i],
        }


dataset = CausalCircuitPairs(out / "train-0.npz")
item = dataset[0]
print(f"{len(dataset)} pairs; item 0:")
for name, value in item.items():
    print(f"  {name:8s} {np.shape(value)!s:14s} {np.asarray(value).dtype}")

# %% [markdown]
# For JAX, stack the decoded pairs into device arrays: images as
# `(n, 2, 512, 512, 3)` float32 (the pair axis is before, after, as in the
# latents), ready for a jitted training step.

# %%
items = [dataset[i] for i in range(len(dataset))]
images_jax = jnp.asarray(
    np.stack([[it["before"], it["after"]] for it in items]), dtype=jnp.float32
)
latents_jax = jnp.asarray(np.stack([it["latents"] for it in items]), jnp.float32)
labels_jax = jnp.asarray(np.stack([it["label"] for it in items]))
print("images ", images_jax.shape, images_jax.dtype)
print("latents", latents_jax.shape, latents_jax.dtype)
print("labels ", labels_jax.shape, labels_jax.dtype, labels_jax)

# A pair without intervention shows the same state twice, so its two images
# are identical; other pairs differ where something changed.
difference = jnp.abs(images_jax[:, 1] - images_jax[:, 0]).mean(axis=(1, 2, 3))
for label, diff in zip(np.asarray(labels_jax), np.asarray(difference), strict=True):
    print(f"  label {label} ({LABEL_NAMES[label]:5s}) mean |after - before| {diff:.4f}")

workdir.cleanup()
