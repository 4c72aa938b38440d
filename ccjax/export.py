"""Writing CausalCircuit datasets to disk as npz files, resumably and in parallel.

A dataset is a directory of npz files in the layout of the published
CausalCircuit data (keys, shapes and dtypes in :func:`validate_file`):

* the training split as ``train-0.npz`` ... ``train-{k-1}.npz`` (or a single
  ``train.npz`` when ``k = 1``), the layout the authors' training code reads;
* ``val.npz`` and ``test.npz``;
* ``ccjax-manifest.json``, which records the generation parameters and the
  SHA-256 of every finished file, so that an interrupted export can resume.

How a file is made. The parent process samples the file's pairs with
``ccjax.sample`` (JAX, float64), in blocks of :data:`SAMPLE_BLOCK` pairs whose
keys are ``fold_in(fold_in(fold_in(key(seed), split), shard), block)``. A
file's content therefore depends only on the seed and its own position, never
on the number of workers or on which files were made before. Worker processes,
each with its own MuJoCo model and OpenGL context, render and JPEG-encode
small chunks of pairs; their results come back in order and are spooled to an
anonymous temporary file, so that memory stays bounded by a chunk rather than
by a file. The npz is then written under a hidden temporary name in the output
directory, synced, and renamed into place. A file under its final name is
always complete.

Resuming. Rerunning the same export skips every file the manifest lists with
a matching checksum and regenerates the rest; since generation is
deterministic, the result is byte-identical to an uninterrupted run. An export
with different parameters, or files the manifest does not know, are never
overwritten unless ``overwrite=True``.

Byte-identity holds for a given machine image: the JPEG bytes depend on the
libjpeg-turbo build inside Pillow, and the pixels on the OpenGL implementation.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import logging
import math
import multiprocessing
import multiprocessing.connection
import multiprocessing.util
import os
import signal
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import numpy as np
from PIL import Image, ImageDraw, ImageFont

import ccjax
from ccjax import physics, render, scm

__all__ = [
    "FILE_KEYS",
    "MANIFEST_NAME",
    "SAMPLE_BLOCK",
    "ExportConfig",
    "ExportError",
    "ExportPlan",
    "ExportSummary",
    "FileReport",
    "Shard",
    "atomic_file",
    "contact_sheet",
    "default_workers",
    "export",
    "prepare_export",
    "run_export",
    "sample_shard",
    "validate_file",
]

logger = logging.getLogger(__name__)

FILE_KEYS = (
    "original_latents",
    "epsilon",
    "imgs",
    "pressed",
    "intervention_labels",
    "intervention_masks",
)
"""Arrays of every npz file, in the order they are written."""

MANIFEST_NAME = "ccjax-manifest.json"
"""File in the output directory that records parameters and finished files."""

SAMPLE_BLOCK = 1000
"""Pairs per call of ``ccjax.sample``: one fixed shape, so JAX compiles once.

Part of the output's definition: changing it changes every file.
"""

_FORMAT_VERSION = 1
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
# Pairs per task sent to a worker: large enough that inter-process traffic is
# negligible, small enough that workers finish a file at nearly the same time.
_CHUNK_PAIRS = 8
# Images per block when copying the spooled JPEGs into the npz.
_COPY_IMAGES = 512
# A fixed timestamp for zip entries: np.savez stamps the current time, which
# would make two runs differ.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_TMP_SUFFIX = ".tmp"


class ExportError(Exception):
    """The export cannot start or continue as asked; nothing was written or lost.

    Raised for invalid sizes, an unwritable output directory, or existing
    output that an export with these parameters may not replace.
    """


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """Everything that determines the content of an exported dataset.

    Attributes:
        seed: root of all randomness, in [0, 2**32).
        n_train: pairs in the training split.
        n_val: pairs in the validation split.
        n_test: pairs in the test split.
        n_shards: files the training split is cut into; 1 writes ``train.npz``.
        quality: JPEG quality, 1 to 100.
        label_probs: probabilities of the intervention labels 0 (none), 1 (red),
            2 (green), 3 (blue), 4 (arm); ``None`` is uniform.
        multisamples: anti-aliasing samples per pixel; ``None`` keeps the
            scene file's setting.
        shadows: whether shadows are drawn.
    """

    seed: int = 0
    n_train: int = 100_000
    n_val: int = 10_000
    n_test: int = 10_000
    n_shards: int = 10
    quality: int = render.DEFAULT_QUALITY
    label_probs: tuple[float, ...] | None = None
    multisamples: int | None = None
    shadows: bool = False

    def validate(self) -> None:
        """Check that the configuration describes a dataset that can be made.

        Raises:
            ExportError: naming the first offending field.
        """
        if not 0 <= self.seed < 2**32:
            raise ExportError(f"seed must be in [0, 2**32), got {self.seed}")
        for name in ("n_train", "n_val", "n_test", "n_shards"):
            if getattr(self, name) < 1:
                raise ExportError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_shards > self.n_train:
            raise ExportError(
                f"n_shards ({self.n_shards}) exceeds n_train ({self.n_train})"
            )
        if not 1 <= self.quality <= 100:
            raise ExportError(f"quality must be in [1, 100], got {self.quality}")
        if self.multisamples is not None and self.multisamples < 0:
            raise ExportError(f"multisamples must be >= 0, got {self.multisamples}")
        if self.label_probs is not None:
            probs = np.asarray(self.label_probs, dtype=np.float64)
            if (
                probs.shape != (5,)
                or np.any(probs < 0)
                or not np.isclose(probs.sum(), 1.0)
            ):
                raise ExportError(
                    "label_probs must be 5 non-negative numbers summing to 1, "
                    f"got {self.label_probs}"
                )

    def manifest_params(self) -> dict:
        """The parameters as recorded in the manifest (JSON-compatible)."""
        params = dataclasses.asdict(self)
        if self.label_probs is not None:
            params["label_probs"] = [float(p) for p in self.label_probs]
        params["sample_block"] = SAMPLE_BLOCK
        params["image_size"] = render.IMAGE_SIZE
        params["generator"] = f"ccjax {ccjax.__version__}"
        params["format"] = _FORMAT_VERSION
        return params


@dataclasses.dataclass(frozen=True)
class Shard:
    """One npz file of the dataset.

    Attributes:
        split: ``train``, ``val`` or ``test``.
        index: position of the file within its split.
        n_pairs: pairs in the file.
        filename: name of the file in the output directory.
    """

    split: str
    index: int
    n_pairs: int
    filename: str


def _shards(config: ExportConfig) -> tuple[Shard, ...]:
    """Cut the splits into files; training files differ by at most one pair."""
    shards = []
    base, extra = divmod(config.n_train, config.n_shards)
    for index in range(config.n_shards):
        name = "train.npz" if config.n_shards == 1 else f"train-{index}.npz"
        shards.append(Shard("train", index, base + (index < extra), name))
    shards.append(Shard("val", 0, config.n_val, "val.npz"))
    shards.append(Shard("test", 0, config.n_test, "test.npz"))
    return tuple(shards)


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    """An export ready to run: its files, and which of them are already done.

    Attributes:
        out_dir: the output directory (exists, writable, manifest written).
        config: the generation parameters.
        shards: every file of the dataset.
        done: names of the files already complete and verified.
    """

    out_dir: Path
    config: ExportConfig
    shards: tuple[Shard, ...]
    done: frozenset[str]

    @property
    def todo(self) -> tuple[Shard, ...]:
        """Files still to make, in output order."""
        return tuple(s for s in self.shards if s.filename not in self.done)

    @property
    def total_pairs(self) -> int:
        """Pairs in the whole dataset."""
        return sum(s.n_pairs for s in self.shards)

    @property
    def done_pairs(self) -> int:
        """Pairs in files already complete."""
        return sum(s.n_pairs for s in self.shards if s.filename in self.done)


@dataclasses.dataclass(frozen=True)
class ExportSummary:
    """What :func:`run_export` did.

    Attributes:
        out_dir: the output directory.
        files_written: names of the files made by this run.
        files_skipped: names of the files found complete and kept.
        pairs_written: pairs rendered and written by this run.
        seconds: wall time of the run.
    """

    out_dir: Path
    files_written: tuple[str, ...]
    files_skipped: tuple[str, ...]
    pairs_written: int
    seconds: float


def default_workers() -> int:
    """One worker per CPU core available to this process."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------
# Sampling (parent process, JAX)


@functools.partial(jax.jit, static_argnums=1)
def _sample_block(key: jax.Array, n: int, label_probs: jax.Array | None):
    """``ccjax.sample``, compiled once per process for the fixed block size."""
    return ccjax.sample(key, n, label_probs=label_probs)


def sample_shard(config: ExportConfig, shard: Shard) -> dict[str, np.ndarray]:
    """Sample the pairs of one file, independent of every other file.

    Args:
        config: generation parameters (seed and label probabilities are used).
        shard: the file to sample.

    Returns:
        Host arrays keyed by their names in the files, N = ``shard.n_pairs``:
        ``original_latents``, ``epsilon`` (N, 2, 4) float64; ``pressed``
        (N, 2, 3) float64; ``intervention_labels`` (N,) int64;
        ``intervention_masks`` (N, 4) bool; and ``qpos`` (N, 2, 3) float64,
        the finger joint angles of each state.
    """
    root = jax.random.key(config.seed)
    shard_key = jax.random.fold_in(
        jax.random.fold_in(root, _SPLIT_IDS[shard.split]), shard.index
    )

    # Float64 latents are part of the file format, so sample in x64 mode.
    blocks = []
    with jax.enable_x64(True):
        label_probs = None
        if config.label_probs is not None:
            label_probs = jax.numpy.asarray(config.label_probs, dtype=np.float64)
        for block in range(math.ceil(shard.n_pairs / SAMPLE_BLOCK)):
            key = jax.random.fold_in(shard_key, block)
            batch = _sample_block(key, SAMPLE_BLOCK, label_probs=label_probs)
            blocks.append(batch.to_numpy())
    return {
        name: np.concatenate([b[name] for b in blocks])[: shard.n_pairs]
        for name in blocks[0]
    }


# ----------------------------------------------------------------------------
# Workers (separate processes, MuJoCo and OpenGL)

_worker_renderer: render.SceneRenderer | None = None
_worker_quality = render.DEFAULT_QUALITY


def _exit_with_parent() -> None:
    """Stop this worker if the parent dies without shutting the pool down.

    After a SIGKILL of the parent, workers would otherwise wait forever on
    their task queue, holding memory and an OpenGL context.
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)


def _worker_init(
    quality: int, multisamples: int | None, shadows: bool, gl_threads: int
) -> None:
    """Set up one worker process: its model, OpenGL context and settings."""
    global _worker_renderer, _worker_quality
    # Ctrl-C reaches the whole process group; the parent alone decides how to
    # stop, so that workers do not print tracebacks of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, daemon=True).start()

    # Mesa's software rasteriser starts one thread per core in every process;
    # with several workers that oversubscribes the cores. Must be set before
    # the first OpenGL context is created.
    os.environ.setdefault("LP_NUM_THREADS", str(gl_threads))
    _worker_quality = quality
    _worker_renderer = render.SceneRenderer(shadows=shadows, multisamples=multisamples)
    # Worker processes end without running atexit handlers; multiprocessing's
    # own finalizers do run, so the OpenGL context is released there.
    multiprocessing.util.Finalize(
        _worker_renderer, _worker_renderer.close, exitpriority=10
    )


def _worker_render(scene_qpos: np.ndarray, latents: np.ndarray) -> list[bytes]:
    """Render and encode a chunk of pairs: 2 * len(scene_qpos) JPEG files."""
    return render.render_pairs_jpeg(
        _worker_renderer, scene_qpos, latents, _worker_quality
    )


# ----------------------------------------------------------------------------
# Files


def _fsync_replace(tmp: Path, final: Path) -> None:
    """Rename a finished temporary file into place, durably."""
    # Temporary files are created private (0600); give the final file the
    # permissions an ordinary new file would have under the user's umask.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[io.BufferedWriter]:
    """Write a file so that it appears complete under its name, or not at all.

    Yields a binary file open on a hidden temporary name in the same
    directory. When the block ends normally the file is synced and renamed to
    ``path`` (replacing it); when the block raises, the temporary is removed.

    Args:
        path: the final file name.
    """
    final = Path(path)
    with _temporary(final.parent, final.name) as f:
        tmp = Path(f.name)
        try:
            yield f
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
    _fsync_replace(tmp, final)


def _temporary(out_dir: Path, name: str):
    """An open, hidden temporary file next to ``name``, for an atomic rename."""
    return tempfile.NamedTemporaryFile(
        dir=out_dir, prefix=f".{name}.", suffix=_TMP_SUFFIX, delete=False
    )


def _zip_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _write_npz(
    fileobj, arrays: dict[str, np.ndarray], spool, lengths: np.ndarray
) -> None:
    """Write one npz file of the published format, streaming the JPEGs from ``spool``.

    Args:
        fileobj: binary file to write to.
        arrays: the non-image arrays, keyed by their names in the file.
        spool: binary file holding the 2N JPEG files back to back.
        lengths: (2N,) int, length of each JPEG in ``spool``.
    """
    n_pairs = len(lengths) // 2
    # Fixed-width bytes, the narrowest that holds every image; numpy pads the
    # shorter ones with NUL bytes, which JPEG decoders ignore after the
    # end-of-image marker and numpy strips when an element is read.
    img_dtype = np.dtype(f"S{int(lengths.max())}")

    # Stored, not deflated, like np.savez: JPEG does not compress further.
    with zipfile.ZipFile(fileobj, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key in FILE_KEYS:
            with zf.open(_zip_entry(key), "w", force_zip64=True) as entry:
                if key != "imgs":
                    np.lib.format.write_array(entry, arrays[key], allow_pickle=False)
                    continue
                header = {
                    "descr": np.lib.format.dtype_to_descr(img_dtype),
                    "fortran_order": False,
                    "shape": (n_pairs, 2),
                }
                np.lib.format.write_array_header_1_0(entry, header)
                spool.seek(0)
                for start in range(0, len(lengths), _COPY_IMAGES):
                    sizes = lengths[start : start + _COPY_IMAGES]
                    blob = spool.read(int(sizes.sum()))
                    ends = np.cumsum(sizes)
                    images = [blob[e - s : e] for s, e in zip(sizes, ends, strict=True)]
                    entry.write(np.array(images, dtype=img_dtype).tobytes())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _write_manifest(out_dir: Path, manifest: dict) -> None:
    """Replace the manifest atomically."""
    with atomic_file(out_dir / MANIFEST_NAME) as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")


def _read_manifest(out_dir: Path) -> dict | None:
    path = out_dir / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ExportError(f"{path} is unreadable ({err}); use overwrite") from err
    if not isinstance(manifest, dict) or not {"params", "files"} <= manifest.keys():
        raise ExportError(f"{path} is not a ccjax manifest; use overwrite")
    return manifest


# ----------------------------------------------------------------------------
# Planning and running


def prepare_export(
    out_dir: str | os.PathLike, config: ExportConfig, *, overwrite: bool = False
) -> ExportPlan:
    """Check an export can run, and find the files an earlier run finished.

    Creates ``out_dir`` and writes the manifest only once every check passed.

    Args:
        out_dir: directory to write the dataset to.
        config: generation parameters.
        overwrite: replace an existing dataset or files in the way.

    Returns:
        The plan to pass to :func:`run_export`.

    Raises:
        ExportError: invalid parameters; ``out_dir`` not a writable directory;
            an export with other parameters, or files not made by this export,
            already there (unless ``overwrite``).
        render.GLUnavailableError: files remain to be made and no OpenGL
            context can be created.
    """
    config.validate()
    out = Path(out_dir)
    shards = _shards(config)
    params = config.manifest_params()

    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    manifest = None
    if out.is_dir() and not overwrite:
        manifest = _read_manifest(out)
    if manifest is not None and manifest["params"] != params:
        changed = sorted(
            k for k in params if manifest["params"].get(k, None) != params[k]
        )
        raise ExportError(
            f"{out} holds an export with other parameters ({', '.join(changed)}); "
            "rerun with the same parameters to resume, or overwrite"
        )
    recorded = {} if manifest is None else manifest["files"]
    done = frozenset(_verified(out, recorded))
    # Without a manifest, files in the way belong to someone else. With a
    # matching one, the directory is this export's: a file it does not list
    # was renamed into place just before a kill, and is simply made again.
    if manifest is None and not overwrite:
        foreign = [s.filename for s in shards if (out / s.filename).exists()]
        if foreign:
            raise ExportError(
                f"{out / foreign[0]} already exists and is not part of an "
                "unfinished export with these parameters; use overwrite"
            )

    # Rendering is what needs OpenGL: without it, fail with the install hint
    # before anything is written (a finished export needs no check).
    if any(s.filename not in done for s in shards):
        render.check_gl()

    # Everything checked: now touch the disk.
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ExportError(f"cannot write to {out}: {err.strerror or err}") from err
    _remove_stale_temporaries(out, [s.filename for s in shards] + [MANIFEST_NAME])
    _write_manifest(
        out,
        {"params": params, "files": {name: recorded[name] for name in sorted(done)}},
    )
    return ExportPlan(out, config, shards, done)


def _verified(out: Path, recorded: dict) -> Iterator[str]:
    """Names of recorded files still on disk with the recorded checksum."""
    for name, entry in recorded.items():
        path = out / name
        if path.is_file() and _sha256(path) == entry.get("sha256"):
            yield name
        else:
            warnings.warn(
                f"{path} is missing or changed since it was written; it will be "
                "generated again",
                stacklevel=3,
            )


def _remove_stale_temporaries(out: Path, names: list[str]) -> None:
    """Delete temporary files that killed runs left next to ``names``."""
    for name in names:
        for path in out.glob(f".{name}.*{_TMP_SUFFIX}"):
            logger.debug("removing stale temporary %s", path)
            path.unlink(missing_ok=True)


def run_export(
    plan: ExportPlan,
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExportSummary:
    """Make the files of ``plan`` that are not done yet.

    Args:
        plan: from :func:`prepare_export`.
        workers: rendering processes; ``None`` is one per core.
        progress: called with the number of pairs just rendered, after each
            chunk of a few pairs.

    Returns:
        What was written and skipped.
    """
    start = time.perf_counter()
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ExportError(f"workers must be positive, got {workers}")
    todo = plan.todo
    written: list[str] = []
    if todo:
        model = physics.load_model()
        manifest = _read_manifest(plan.out_dir)
        gl_threads = max(1, default_workers() // workers)
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(
                plan.config.quality,
                plan.config.multisamples,
                plan.config.shadows,
                gl_threads,
            ),
        )
        try:
            # Sample and submit the next file before writing the current one,
            # so the workers stay busy while the parent writes.
            pending = _submit(pool, plan.config, todo[0], model)
            for i, shard in enumerate(todo):
                arrays, results = pending
                with tempfile.TemporaryFile(dir=plan.out_dir) as spool:
                    lengths = _spool(results, spool, progress)
                    if i + 1 < len(todo):
                        pending = _submit(pool, plan.config, todo[i + 1], model)
                    _finish_file(plan.out_dir, shard, arrays, spool, lengths, manifest)
                written.append(shard.filename)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    return ExportSummary(
        out_dir=plan.out_dir,
        files_written=tuple(written),
        files_skipped=tuple(s.filename for s in plan.shards if s.filename in plan.done),
        pairs_written=sum(s.n_pairs for s in todo),
        seconds=time.perf_counter() - start,
    )


def _submit(pool, config: ExportConfig, shard: Shard, model):
    """Sample a file's pairs and queue their rendering; results come in order."""
    arrays = sample_shard(config, shard)
    scene_qpos = physics.scene_qpos(arrays.pop("qpos"), arrays["pressed"], model)
    latents = arrays["original_latents"]
    starts = range(0, shard.n_pairs, _CHUNK_PAIRS)
    results = pool.map(
        _worker_render,
        [scene_qpos[s : s + _CHUNK_PAIRS] for s in starts],
        [latents[s : s + _CHUNK_PAIRS] for s in starts],
    )
    return arrays, results


def _spool(results, spool, progress) -> np.ndarray:
    """Append the JPEGs of each finished chunk to ``spool``; return lengths."""
    lengths = []
    for images in results:
        for image in images:
            spool.write(image)
            lengths.append(len(image))
        if progress is not None:
            progress(len(images) // 2)
    spool.flush()
    return np.asarray(lengths, dtype=np.int64)


def _finish_file(out_dir, shard, arrays, spool, lengths, manifest) -> None:
    """Write a file under a temporary name, rename it, and record it."""
    final = out_dir / shard.filename
    with atomic_file(final) as f:
        _write_npz(f, arrays, spool, lengths)
    manifest["files"][shard.filename] = {
        "pairs": shard.n_pairs,
        "sha256": _sha256(final),
    }
    _write_manifest(out_dir, manifest)
    logger.debug("wrote %s (%d pairs)", final, shard.n_pairs)


def export(
    out_dir: str | os.PathLike,
    config: ExportConfig | None = None,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ExportSummary:
    """Generate a CausalCircuit dataset on disk, resuming an interrupted run.

    The rendering workers are started with the ``spawn`` method, which imports
    the calling script again in each worker. Call this from a function or
    under ``if __name__ == "__main__":`` in a script (a notebook or the
    ``ccjax`` command needs nothing special); otherwise every worker reruns
    the script and the pool breaks.

    Args:
        out_dir: directory to write to (created if needed).
        config: generation parameters; ``None`` is the full default dataset
            (100,000 / 10,000 / 10,000 pairs, 10 training files).
        workers: rendering processes; ``None`` is one per core.
        overwrite: replace an existing dataset with other parameters.
        progress: called with the number of pairs just rendered.

    Returns:
        What was written and skipped.

    Raises:
        ExportError: bad parameters or output directory; nothing was written.
        render.GLUnavailableError: no OpenGL context can be created.
    """
    plan = prepare_export(out_dir, config or ExportConfig(), overwrite=overwrite)
    return run_export(plan, workers=workers, progress=progress)


# ----------------------------------------------------------------------------
# Reading files back: validation and contact sheets

_DTYPES = {
    "original_latents": np.dtype(np.float64),
    "epsilon": np.dtype(np.float64),
    "pressed": np.dtype(np.float64),
    "intervention_labels": np.dtype(np.int64),
    "intervention_masks": np.dtype(np.bool_),
}
_TRAILING = {
    "original_latents": (2, 4),
    "epsilon": (2, 4),
    "imgs": (2,),
    "pressed": (2, 3),
    "intervention_labels": (),
    "intervention_masks": (4,),
}


@dataclasses.dataclass
class FileReport:
    """The outcome of :func:`validate_file`.

    Attributes:
        path: the file checked.
        n_pairs: pairs in the file (0 if it could not be read).
        problems: every violation of the format found, in words; empty if valid.
        label_counts: (5,) int, pairs per intervention label 0-4.
        image_bytes: width of the fixed-width image strings (``S<len>``).
        images_checked: JPEG files decoded.
    """

    path: Path
    n_pairs: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    label_counts: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(5, np.int64)
    )
    image_bytes: int = 0
    images_checked: int = 0

    @property
    def valid(self) -> bool:
        """Whether no problem was found."""
        return not self.problems


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an npz file, loaded without pickle.

    Raises:
        ExportError: the file is missing, not an npz (zip) file, or holds
            arrays that need pickle.
    """
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as err:
        raise ExportError(f"cannot read {path}: {err.strerror or err}") from err
    if magic != b"PK\x03\x04":
        raise ExportError(f"{path} is not an npz file")
    # Open the file here rather than in np.load, which leaves its handle open
    # when the zip directory is corrupt.
    try:
        with path.open("rb") as f, np.load(f, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        reason = str(err).strip().split(". ")[0] if str(err).strip() else "corrupt"
        raise ExportError(f"cannot read {path} as npz: {reason}") from err


def validate_file(
    path: str | os.PathLike, *, max_pairs: int | None = None
) -> FileReport:
    """Check one npz file against the published CausalCircuit file format.

    Checks the keys, shapes and dtypes; that latents, noise and presses are
    finite and in [0, 1]; that labels are 0-4 and the masks match them; that
    every variable not intervened on keeps its noise, and a pair without
    intervention its latents; and that the images decode with Pillow to
    512x512 RGB.

    Args:
        path: the npz file.
        max_pairs: decode the images of only the first ``max_pairs`` pairs;
            ``None`` decodes all.

    Returns:
        The report; ``report.valid`` says whether the file is valid.

    Raises:
        ExportError: the file cannot be read as an npz without pickle.
    """
    path = Path(path)
    report = FileReport(path)
    arrays = _load_arrays(path)
    problems = report.problems

    # keys, shapes, dtypes
    missing = [k for k in FILE_KEYS if k not in arrays]
    extra = sorted(set(arrays) - set(FILE_KEYS))
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected keys: {', '.join(extra)}")
    present = [k for k in FILE_KEYS if k in arrays]
    n = arrays[present[0]].shape[0] if present and arrays[present[0]].ndim else 0
    report.n_pairs = n
    for key in present:
        if arrays[key].shape != (n, *_TRAILING[key]):
            shape = ", ".join(["N", *map(str, _TRAILING[key])])
            problems.append(f"{key} has shape {arrays[key].shape}, expected ({shape})")
        if key in _DTYPES and arrays[key].dtype != _DTYPES[key]:
            problems.append(
                f"{key} has dtype {arrays[key].dtype}, expected {_DTYPES[key]}"
            )
    if "imgs" in arrays and arrays["imgs"].dtype.kind != "S":
        problems.append(f"imgs has dtype {arrays['imgs'].dtype}, expected S<len>")
    if problems:
        return report

    _check_values(arrays, problems)
    labels = arrays["intervention_labels"]
    report.label_counts = np.bincount(np.clip(labels, 0, 4), minlength=5)[:5]
    report.image_bytes = arrays["imgs"].dtype.itemsize
    _check_images(arrays["imgs"], max_pairs, report)
    return report


def _check_values(arrays: dict[str, np.ndarray], problems: list[str]) -> None:
    """Value ranges and the consistency of labels, masks, noise and latents."""
    for key in ("original_latents", "epsilon", "pressed"):
        value = arrays[key]
        bad = ~(np.isfinite(value) & (value >= 0) & (value <= 1))
        if bad.any():
            problems.append(f"{key} has {bad.sum()} values outside [0, 1]")

    labels, masks = arrays["intervention_labels"], arrays["intervention_masks"]
    n_labels = len(scm.LABEL_TARGETS)
    known = (labels >= 0) & (labels < n_labels)
    if not known.all():
        problems.append(
            f"{(~known).sum()} intervention labels outside 0..{n_labels - 1}"
        )
    expected = np.asarray(scm.LABEL_TARGETS)[np.where(known, labels, 0)]
    mismatch = known & np.any(masks != expected, axis=-1)
    if mismatch.any():
        first = int(np.flatnonzero(mismatch)[0])
        problems.append(
            f"{mismatch.sum()} masks disagree with their label "
            f"(first: pair {first}, label {labels[first]}, mask {masks[first]})"
        )

    # Variables not intervened on keep their noise; a pair without
    # intervention is the same state twice.
    epsilon, latents = arrays["epsilon"], arrays["original_latents"]
    kept = ~masks & (epsilon[:, 0] != epsilon[:, 1])
    if kept.any():
        problems.append(f"{kept.sum()} noise values change without intervention")
    trivial = ~masks.any(axis=-1)
    moved = trivial & np.any(latents[:, 0] != latents[:, 1], axis=-1)
    if moved.any():
        problems.append(f"{moved.sum()} pairs without intervention change latents")


def _check_images(imgs: np.ndarray, max_pairs: int | None, report) -> None:
    """Decode images with Pillow, as the authors' loader does."""
    size = (render.IMAGE_SIZE, render.IMAGE_SIZE)
    failures = []
    for index in np.ndindex(*imgs[:max_pairs].shape):
        try:
            with Image.open(io.BytesIO(imgs[index])) as image:
                image.load()
                if image.format != "JPEG" or image.mode != "RGB" or image.size != size:
                    failures.append(
                        f"{index}: {image.format} {image.mode} {image.size}"
                    )
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            failures.append(f"{index}: {err}")
        report.images_checked += 1
    if failures:
        report.problems.append(
            f"{len(failures)} images are not {size[0]}x{size[1]} RGB JPEG "
            f"(first: pair, state {failures[0]})"
        )


def _caption(latents: np.ndarray) -> str:
    return " ".join(
        f"{name[0].upper()} {value:.2f}"
        for name, value in zip(scm.VARIABLES, latents, strict=True)
    )


def contact_sheet(
    path: str | os.PathLike, *, pairs: int = 8, start: int = 0, thumb: int = 256
) -> Image.Image:
    """Draw pairs of a file side by side, labelled with intervention and latents.

    Each row shows one pair: the before image, the after image, and a caption
    with the pair's index, the intervened variable and the latents (red,
    green, blue, arm) of both states.

    Args:
        path: an npz file in the published format.
        pairs: number of pairs (rows) to draw.
        start: index of the first pair.
        thumb: side of each image in the sheet, in pixels.

    Returns:
        An RGB image, ``2 * thumb + 300`` wide and ``pairs * thumb`` high
        (fewer rows if the file ends first).

    Raises:
        ExportError: the file cannot be read, lacks the published keys, or has no
            pair at ``start``.
    """
    arrays = _load_arrays(Path(path))
    missing = [k for k in FILE_KEYS if k not in arrays]
    if missing:
        raise ExportError(f"{path} lacks the keys {', '.join(missing)}")
    n = len(arrays["imgs"])
    if not 0 <= start < n:
        raise ExportError(f"{path} has {n} pairs; there is no pair {start}")
    rows = range(start, min(start + pairs, n))
    names = ["none", *scm.VARIABLES]

    sheet = Image.new("RGB", (2 * thumb + 300, len(rows) * thumb), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    for row, i in enumerate(rows):
        top = row * thumb
        for state in range(2):
            with Image.open(io.BytesIO(arrays["imgs"][i, state])) as image:
                small = image.convert("RGB").resize((thumb, thumb), Image.BILINEAR)
            sheet.paste(small, (state * thumb, top))
        label = int(arrays["intervention_labels"][i])
        target = names[label] if 0 <= label < len(names) else str(label)
        latents = arrays["original_latents"][i]
        lines = [
            f"pair {i}",
            f"intervention: {target} ({label})",
            f"before: {_caption(latents[0])}",
            f"after:  {_caption(latents[1])}",
        ]
        draw.multiline_text(
            (2 * thumb + 10, top + 10), "\n".join(lines), fill="black", font=font
        )
    return sheet
