"""Throughput and memory of rendering, JPEG encoding and the full npz export.

Measures at 512x512 on this machine's CPU (Mesa software OpenGL):

* render alone (one process), with the scene's anti-aliasing and without,
  with and without shadows;
* JPEG encoding alone at the default quality;
* the full export (sampling, rendering, encoding, spooling, writing npz)
  with 1 and 2 workers in steady state, the scaling between them, and its
  overhead against rendering plus encoding in one loop;
* the peak memory (resident set of the export's whole process tree) of a
  small and a larger export with the same file size, to show memory does not
  grow with the number of pairs; ``--memory-pairs 20000`` runs the full-size
  check (slow);
* the projected time of the default 120,000-pair dataset.

Usage: python bench/bench_render.py [--pairs 400] [--memory-pairs 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import record, timeit

from ccjax import export, physics, render

FULL_DATASET_PAIRS = 120_000


def states(model, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scene configurations along the arc and random light intensities."""
    rng = np.random.default_rng(seed)
    arm = rng.uniform(size=n)
    finger = np.asarray(physics.arm_qpos(arm), dtype=np.float64)
    pressed = np.asarray(physics.press(arm), dtype=np.float64)
    return physics.scene_qpos(finger, pressed, model), rng.uniform(size=(n, 3))


def bench_render_and_encode(n: int) -> float:
    """Record images/s of rendering and of encoding; return their joint rate."""
    model = physics.load_model()
    qpos, lights = states(model, n)
    note = f"1 process, {n} frames, Mesa threads default"
    frames = list(zip(qpos, lights, strict=True))
    rates = {}
    for label, kwargs in [
        ("render (scene AA x4)", {}),
        ("render (no AA)", {"multisamples": 0}),
        ("render (scene AA x4, shadows)", {"shadows": True}),
        ("render (no AA, shadows)", {"multisamples": 0, "shadows": True}),
    ]:
        with render.SceneRenderer(model, **kwargs) as renderer:
            renderer.render(qpos[0], lights[0])  # first frame builds GL state
            seconds = timeit(
                lambda r=renderer: [r.render(q, z) for q, z in frames], repeat=3
            )
        rates[label] = n / seconds
        record("render", label, rates[label], "images/s", note)

    with render.SceneRenderer(model) as renderer:
        images = [renderer.render(q, z) for q, z in frames]
        seconds = timeit(lambda: [render.encode_jpeg(im) for im in images], repeat=3)
        encode = f"encode jpeg q{render.DEFAULT_QUALITY} (pillow)"
        record("render", encode, n / seconds, "images/s", note)

        # The work of an export without its machinery: one loop, in process.
        seconds = timeit(
            lambda: [render.encode_jpeg(renderer.render(q, z)) for q, z in frames],
            repeat=3,
        )
    joint = n / seconds
    record("render", "render+encode loop (scene AA)", joint, "images/s", note)
    return joint


def bench_export(pairs: int, workers: int) -> float:
    """Steady-state images/s of a full export; record it and the whole run."""
    config = export.ExportConfig(
        seed=1, n_train=pairs, n_val=pairs // 8, n_test=pairs // 8, n_shards=2
    )
    stamps: list[tuple[float, int]] = []

    def progress(n: int) -> None:
        stamps.append((time.perf_counter(), n))

    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as out:
        summary = export.export(out, config, workers=workers, progress=progress)

    # Steady state: from the first finished chunk to the last, so worker
    # start-up and JAX compilation are left out.
    done = sum(n for _, n in stamps[1:])
    steady = 2 * done / (stamps[-1][0] - stamps[0][0])
    note = f"{summary.pairs_written} pairs, files of {pairs // 2} pairs"
    record("export", f"export {workers} worker(s), steady", steady, "images/s", note)
    record(
        "export",
        f"export {workers} worker(s), whole run",
        2 * summary.pairs_written / summary.seconds,
        "images/s",
        note + ", incl. start-up and compilation",
    )
    return steady


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def bench_memory(pairs: int, per_file: int) -> None:
    """Peak RSS of a ``ccjax generate`` process tree writing ``pairs`` pairs."""
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as out:
        shards = max(1, pairs // per_file)
        command = [sys.executable, "-m", "ccjax.cli", "generate", "--out", out]
        command += ["--train", str(pairs), "--shards", str(shards)]
        command += ["--val", "1", "--test", "1", "--overwrite"]
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        peak = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _tree_rss(process.pid))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.perf_counter()
        process.wait()
        stop.set()
        sampler.join()
        seconds = time.perf_counter() - start
        size = max(p.stat().st_size for p in Path(out).glob("train*.npz"))
    if process.returncode != 0:
        raise RuntimeError(f"generate failed with status {process.returncode}")
    note = (
        f"{pairs} train pairs in files of {per_file} ({size / 2**20:.0f} MiB), "
        f"{seconds:.0f} s, parent + workers"
    )
    record("memory", f"peak RSS, {pairs} pairs", peak / 2**20, "MiB", note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="frames per case")
    parser.add_argument("--pairs", type=int, default=400, help="export size")
    parser.add_argument("--memory-pairs", type=int, default=2000)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    joint = bench_render_and_encode(args.frames)
    one = bench_export(args.pairs, workers=1)
    two = bench_export(args.pairs, workers=2)
    record("export", "scaling 2 vs 1 worker", two / one, "ratio")
    record(
        "export",
        "overhead vs render+encode loop",
        100 * (1 - one / joint),
        "%",
        "1 worker against one in-process render+encode loop",
    )
    best = max(one, two)
    record(
        "export",
        f"projected {FULL_DATASET_PAIRS} pairs",
        2 * FULL_DATASET_PAIRS / best / 60,
        "minutes",
        f"at {best:.1f} images/s steady",
    )

    if not args.skip_memory:
        per_file = max(1, args.memory_pairs // 4)
        bench_memory(per_file, per_file)
        bench_memory(args.memory_pairs, per_file)


if __name__ == "__main__":
    main()
