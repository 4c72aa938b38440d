"""Export: the published file format, determinism, resume, validation, sheets."""

import dataclasses
import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from ccjax import export, physics, render

pytestmark = pytest.mark.slow

# A decoded image against a fresh render of the state stored beside it. An
# image of another pair scores far lower (a moved finger or lamp).
MIN_PSNR_DB = 40.0

CONFIG = export.ExportConfig(seed=7, n_train=6, n_val=2, n_test=2, n_shards=2)
FILES = ("train-0.npz", "train-1.npz", "val.npz", "test.npz")
FORMAT = {
    "original_latents": ((2, 4), np.float64),
    "epsilon": ((2, 4), np.float64),
    "pressed": ((2, 3), np.float64),
    "intervention_labels": ((), np.int64),
    "intervention_masks": ((4,), np.bool_),
}
# Variables each label intervenes on, as published.
LABEL_MASKS = np.array(
    [
        [0, 0, 0, 0],
        [1, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 1, 0],
        [0, 0, 0, 1],
    ],
    dtype=bool,
)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    out = tmp_path_factory.mktemp("one_worker")
    summary = export.export(out, CONFIG, workers=1)
    return out, summary


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_workers")
    export.export(out, CONFIG, workers=2)
    return out


def _load(path):
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_writes_the_expected_files(one_worker):
    out, summary = one_worker
    assert summary.files_written == FILES
    assert summary.pairs_written == 10
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([*FILES, export.MANIFEST_NAME])


@pytest.mark.parametrize("name", FILES)
def test_files_follow_spec_without_pickle(one_worker, name):
    arrays = _load(one_worker[0] / name)
    n = {"train-0.npz": 3, "train-1.npz": 3, "val.npz": 2, "test.npz": 2}[name]
    assert set(arrays) == {*FORMAT, "imgs"}
    for key, (trailing, dtype) in FORMAT.items():
        assert arrays[key].shape == (n, *trailing), key
        assert arrays[key].dtype == dtype, key
    assert arrays["imgs"].shape == (n, 2)
    assert arrays["imgs"].dtype.kind == "S"

    for key in ("original_latents", "epsilon", "pressed"):
        assert ((arrays[key] >= 0) & (arrays[key] <= 1)).all(), key
    labels = arrays["intervention_labels"]
    np.testing.assert_array_equal(arrays["intervention_masks"], LABEL_MASKS[labels])


def test_images_decode_as_the_reference_loader_does(one_worker):
    arrays = _load(one_worker[0] / "train-0.npz")
    for jpeg in arrays["imgs"].ravel():
        pixels = np.array(Image.open(io.BytesIO(jpeg)))
        assert pixels.shape == (512, 512, 3) and pixels.dtype == np.uint8
        image = pixels / 255
        assert 0 <= image.min() <= image.max() <= 1


def test_each_image_shows_the_state_stored_beside_it(one_worker):
    arrays = _load(one_worker[0] / "val.npz")
    model = physics.load_model()
    latents = arrays["original_latents"]
    finger = np.asarray(physics.arm_qpos(latents[..., 3]), dtype=np.float64)
    qpos = physics.scene_qpos(finger, arrays["pressed"], model)
    with render.SceneRenderer(model) as renderer:
        for i, t in np.ndindex(2, 2):
            raw = renderer.render(qpos[i, t], latents[i, t, :3]).astype(np.float64)
            stored = np.array(Image.open(io.BytesIO(arrays["imgs"][i, t])))
            mse = np.mean((stored - raw) ** 2)
            assert 10 * np.log10(255**2 / mse) > MIN_PSNR_DB, (i, t)


@pytest.mark.parametrize("name", [*FILES, export.MANIFEST_NAME])
def test_output_is_byte_identical_for_any_worker_count(one_worker, two_workers, name):
    assert (one_worker[0] / name).read_bytes() == (two_workers / name).read_bytes()


def test_manifest_records_parameters_and_checksums(one_worker):
    out = one_worker[0]
    manifest = json.loads((out / export.MANIFEST_NAME).read_text())
    assert manifest["params"]["seed"] == CONFIG.seed
    assert manifest["params"]["n_train"] == CONFIG.n_train
    assert set(manifest["files"]) == set(FILES)
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == _sha256(out / name)


def test_a_file_depends_only_on_seed_split_and_index():
    val = export.Shard("val", 0, 2, "val.npz")
    other_train = dataclasses.replace(CONFIG, n_train=50, n_shards=5)
    a = export.sample_shard(CONFIG, val)
    b = export.sample_shard(other_train, val)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)

    # A shorter file of the same split and index is a prefix of a longer one.
    long = export.sample_shard(CONFIG, export.Shard("train", 0, 5, "x"))
    short = export.sample_shard(CONFIG, export.Shard("train", 0, 3, "x"))
    np.testing.assert_array_equal(long["epsilon"][:3], short["epsilon"])

    # Other seeds, splits and indices give other pairs.
    reseeded = export.sample_shard(dataclasses.replace(CONFIG, seed=8), val)
    test = export.sample_shard(CONFIG, export.Shard("test", 0, 2, "test.npz"))
    second = export.sample_shard(CONFIG, export.Shard("val", 1, 2, "x"))
    for other in (reseeded, test, second):
        assert not np.array_equal(a["epsilon"], other["epsilon"])


def test_label_probabilities_reach_the_sampler():
    only_arm = dataclasses.replace(CONFIG, label_probs=(0.0, 0.0, 0.0, 0.0, 1.0))
    arrays = export.sample_shard(only_arm, export.Shard("val", 0, 20, "val.npz"))
    np.testing.assert_array_equal(arrays["intervention_labels"], 4)
    np.testing.assert_array_equal(arrays["intervention_masks"], LABEL_MASKS[[4] * 20])


def test_rerun_with_same_parameters_skips_finished_files(one_worker):
    out = one_worker[0]
    before = {name: _sha256(out / name) for name in FILES}
    plan = export.prepare_export(out, CONFIG)
    assert plan.done == frozenset(FILES)
    assert plan.todo == ()
    assert plan.done_pairs == plan.total_pairs == 10
    assert {name: _sha256(out / name) for name in FILES} == before


def test_other_parameters_are_refused_without_overwrite(one_worker):
    out = one_worker[0]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(export.ExportError, match="seed"):
        export.prepare_export(out, dataclasses.replace(CONFIG, seed=8))
    with pytest.raises(export.ExportError, match="quality"):
        export.prepare_export(out, dataclasses.replace(CONFIG, quality=50))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_foreign_files_are_refused_without_overwrite(tmp_path):
    (tmp_path / "val.npz").write_bytes(b"not ours")
    with pytest.raises(export.ExportError, match="already exists"):
        export.prepare_export(tmp_path, CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val.npz"]
    plan = export.prepare_export(tmp_path, CONFIG, overwrite=True)
    assert plan.todo == plan.shards


def test_unwritable_destination_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        with pytest.raises(export.ExportError):
            export.prepare_export(out, CONFIG)
    assert blocker.read_text() == "x"


@pytest.mark.parametrize(
    "change",
    [
        {"n_train": 0},
        {"n_val": -1},
        {"n_test": 0},
        {"n_shards": 0},
        {"n_shards": 7},
        {"quality": 0},
        {"quality": 101},
        {"seed": -1},
        {"label_probs": (0.5, 0.5)},
        {"label_probs": (0.5, 0.5, 0.5, 0.0, 0.0)},
    ],
)
def test_invalid_parameters_are_refused_before_writing(tmp_path, change):
    out = tmp_path / "out"
    with pytest.raises(export.ExportError):
        export.prepare_export(out, dataclasses.replace(CONFIG, **change))
    assert not out.exists()


def test_one_shard_writes_a_single_train_file(tmp_path):
    plan = export.prepare_export(tmp_path, dataclasses.replace(CONFIG, n_shards=1))
    assert [s.filename for s in plan.shards] == ["train.npz", "val.npz", "test.npz"]
    sizes = export.prepare_export(
        tmp_path / "b", dataclasses.replace(CONFIG, n_train=11, n_shards=3)
    ).shards
    assert [s.n_pairs for s in sizes[:3]] == [4, 4, 3]


def test_interrupted_export_resumes_to_identical_output(tmp_path, one_worker):
    done = 0

    def interrupt_in_second_file(n):
        nonlocal done
        done += n
        if done > 3:  # train-0 holds 3 pairs; stop while train-1 renders
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export.export(tmp_path, CONFIG, workers=1, progress=interrupt_in_second_file)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        export.MANIFEST_NAME,
        "train-0.npz",
    ]

    summary = export.export(tmp_path, CONFIG, workers=1)
    assert summary.files_skipped == ("train-0.npz",)
    for name in [*FILES, export.MANIFEST_NAME]:
        assert (tmp_path / name).read_bytes() == (one_worker[0] / name).read_bytes()


def test_validate_file_accepts_an_exported_file(one_worker):
    report = export.validate_file(one_worker[0] / "train-1.npz")
    assert report.valid, report.problems
    assert report.n_pairs == 3 and report.images_checked == 6
    assert report.label_counts.sum() == 3


def _set(index, value):
    def mutate(a):
        a[index] = value
        return a

    return mutate


def _scale_after_noise(epsilon):
    epsilon[:, 1] *= 0.5
    return epsilon


def _trivial_first_pair(arrays):
    """Make pair 0 a consistent pair without intervention (before twice)."""
    arrays = {key: value.copy() for key, value in arrays.items()}
    for key in ("original_latents", "epsilon", "pressed", "imgs"):
        arrays[key][0, 1] = arrays[key][0, 0]
    arrays["intervention_labels"][0] = 0
    arrays["intervention_masks"][0] = False
    return arrays


# name: (array, change, words the report must contain)
BREAKAGES = {
    "float32 latents": (
        "original_latents",
        lambda a: a.astype(np.float32),
        "original_latents has dtype float32",
    ),
    "latent above 1": (
        "original_latents",
        _set((0, 0, 0), 1.5),
        "original_latents has 1 values outside [0, 1]",
    ),
    "NaN noise": ("epsilon", _set((0, 1, 2), np.nan), "epsilon has 1 values outside"),
    "negative press": ("pressed", _set((0, 0, 0), -0.1), "pressed has 1 values"),
    "label 5": ("intervention_labels", _set(0, 5), "1 intervention labels outside"),
    "int32 labels": (
        "intervention_labels",
        lambda a: a.astype(np.int32),
        "intervention_labels has dtype int32",
    ),
    "mask off label": ("intervention_masks", lambda a: ~a, "disagree with their label"),
    "wrong shape": ("pressed", lambda a: a[:, :, :2], "pressed has shape (3, 2, 2)"),
    "corrupt jpeg": ("imgs", _set((0, 1), b"\xff\xd8 broken"), "1 images are not"),
    "kept noise changes": (
        "epsilon",
        _scale_after_noise,
        "change without intervention",
    ),
    "trivial pair moves": (
        "original_latents",
        _set((0, 1, 3), 0.123),
        "1 pairs without intervention change latents",
    ),
}


def test_validate_file_accepts_a_consistent_trivial_pair(one_worker, tmp_path):
    arrays = _trivial_first_pair(_load(one_worker[0] / "train-0.npz"))
    np.savez(tmp_path / "trivial.npz", **arrays)
    report = export.validate_file(tmp_path / "trivial.npz")
    assert report.valid, report.problems


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_validate_file_reports_each_violation(one_worker, tmp_path, breakage):
    key, mutate, words = BREAKAGES[breakage]
    arrays = _trivial_first_pair(_load(one_worker[0] / "train-0.npz"))
    arrays[key] = mutate(arrays[key].copy())
    path = tmp_path / "broken.npz"
    np.savez(path, **arrays)
    report = export.validate_file(path)
    assert not report.valid
    assert words in " | ".join(report.problems), report.problems


def test_validate_file_reports_missing_and_extra_keys(one_worker, tmp_path):
    arrays = _load(one_worker[0] / "train-0.npz")
    arrays["extra"] = np.zeros(3)
    del arrays["pressed"]
    np.savez(tmp_path / "keys.npz", **arrays)
    problems = " ".join(export.validate_file(tmp_path / "keys.npz").problems)
    assert "missing keys: pressed" in problems and "unexpected keys: extra" in problems


@pytest.mark.parametrize("content", [b"", b"plain text", b"PK\x03\x04truncated"])
def test_unreadable_files_raise_export_error(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(export.ExportError):
        export.validate_file(path)
    with pytest.raises(export.ExportError):
        export.validate_file(tmp_path / "missing.npz")


def test_contact_sheet_shows_requested_pairs(one_worker):
    sheet = export.contact_sheet(one_worker[0] / "train-0.npz", pairs=2, thumb=128)
    assert sheet.size == (2 * 128 + 300, 2 * 128)
    # The rows hold the images: not blank white.
    assert np.asarray(sheet)[:, :256].mean() < 200
    with pytest.raises(export.ExportError, match="no pair 3"):
        export.contact_sheet(one_worker[0] / "train-0.npz", start=3)
