"""The ccjax command, run as a real subprocess: generate, resume, show, info, errors."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

# Enough pairs per training file that a file takes a second or more to
# render, so that a kill right after the first file lands mid-export.
GENERATE = ["--seed", "3", "--train", "120", "--shards", "3", "--val", "2"]
GENERATE += ["--test", "2", "--workers", "2"]
FILES = ("train-0.npz", "train-1.npz", "train-2.npz", "val.npz", "test.npz")
MANIFEST = "ccjax-manifest.json"
RUN_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Subprocess environment sharing one JAX compilation cache, so that only
    the first run pays for compiling the sampler. The cache goes where the
    command puts it by default, under the user's cache directory."""
    environ = dict(os.environ)
    environ.pop("JAX_COMPILATION_CACHE_DIR", None)
    environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("user_cache"))
    return environ


def ccjax(*args, env, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ccjax.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        **kwargs,
    )


def snapshot(root) -> dict:
    """Every file under ``root``: relative path -> bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory, env):
    out = tmp_path_factory.mktemp("reference") / "data"
    result = ccjax("generate", "--out", out, *GENERATE, env=env)
    assert result.returncode == 0, result.stderr
    return out, result


def test_generate_writes_files_and_a_summary(reference):
    out, result = reference
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, MANIFEST])
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"wrote 5 files (124 pairs) to {out}")
    assert "pairs/s" in summary
    # The progress bar goes to stderr and reaches the total.
    assert "124/124" in result.stderr


def test_generate_keeps_compiled_code_in_the_user_cache(reference, env):
    cache = Path(env["XDG_CACHE_HOME"]) / "ccjax" / "jax"
    assert any(cache.iterdir()), "no compiled code was cached"


def test_generate_again_reports_complete_and_changes_nothing(reference, env):
    out, _ = reference
    before = snapshot(out)
    result = ccjax("generate", "--out", out, *GENERATE, env=env)
    assert result.returncode == 0, result.stderr
    assert "already complete" in result.stdout
    assert snapshot(out) == before


def test_info_accepts_a_generated_file(reference, env):
    result = ccjax("info", reference[0] / "train-1.npz", env=env)
    assert result.returncode == 0, result.stderr
    assert "40 pairs" in result.stdout
    assert "80 decoded" in result.stdout
    assert result.stdout.strip().endswith("valid")


def test_show_draws_a_contact_sheet(reference, env, tmp_path):
    png = tmp_path / "sheet.png"
    result = ccjax(
        "show", reference[0] / "val.npz", "--pairs", "5", "--out", png, env=env
    )
    assert result.returncode == 0, result.stderr
    with Image.open(png) as sheet:
        # Two 256-pixel images and a caption column per row; val has 2 pairs.
        assert sheet.format == "PNG" and sheet.size == (2 * 256 + 300, 2 * 256)
    jpeg = tmp_path / "sheet.jpg"
    result = ccjax("show", reference[0] / "val.npz", "--out", jpeg, env=env)
    assert result.returncode == 0, result.stderr
    with Image.open(jpeg) as sheet:
        assert sheet.format == "JPEG" and sheet.size == (2 * 256 + 300, 2 * 256)


def test_killed_generate_resumes_to_identical_output(reference, env, tmp_path):
    out = tmp_path / "data"
    command = [sys.executable, "-m", "ccjax.cli", "generate", "--out", str(out)]
    process = subprocess.Popen(
        [*command, *GENERATE],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the workers die too
    )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not (out / "train-0.npz").exists():
            assert process.poll() is None, "generate exited before the first file"
            assert time.monotonic() < deadline, "no file after the timeout"
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    # Killed midway: later files missing, and every file under a final name
    # is complete (identical to the uninterrupted run's).
    expected = snapshot(reference[0])
    present = [name for name in FILES if (out / name).exists()]
    assert "test.npz" not in present, "the export finished before the kill"
    for name in present:
        assert (out / name).read_bytes() == expected[name], name

    result = ccjax("generate", "--out", out, *GENERATE, env=env)
    assert result.returncode == 0, result.stderr
    assert snapshot(out) == expected


def _generate_args(out):
    """A small valid generate command; a bad option added later wins."""
    sizes = ["--train", "4", "--shards", "2", "--val", "1", "--test", "1"]
    return ["generate", "--out", out, *sizes]


BAD_GENERATE = {
    "zero train": ["--train", "0"],
    "negative val": ["--val", "-3"],
    "zero test": ["--test", "0"],
    "zero shards": ["--shards", "0"],
    "more shards than pairs": ["--shards", "5"],
    "zero workers": ["--workers", "0"],
    "quality 101": ["--quality", "101"],
    "seed not a number": ["--seed", "x"],
    "four label probs": ["--label-probs", "0.25,0.25,0.25,0.25"],
    "unknown flag": ["--frobnicate"],
}


@pytest.mark.parametrize("case", sorted(BAD_GENERATE))
def test_bad_generate_arguments_fail_with_one_line(case, env, tmp_path):
    out = tmp_path / "out"
    result = ccjax(*_generate_args(out), *BAD_GENERATE[case], env=env)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("ccjax")
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [[], ["bogus"], ["generate"], ["info"], ["show", "x.npz"]],
    ids=["no command", "unknown command", "no out", "no file", "show no out"],
)
def test_incomplete_commands_fail_with_one_line(args, env, tmp_path):
    result = ccjax(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_fails_and_writes_nothing(env, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        result = ccjax(*_generate_args(out), env=env)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert snapshot(tmp_path) == {"file": b"x"}


def test_existing_output_is_kept(reference, env, tmp_path):
    out, _ = reference
    before = snapshot(out)
    other = ccjax("generate", "--out", out, *GENERATE, "--seed", "4", env=env)
    assert other.returncode == 2
    assert "seed" in other.stderr and len(other.stderr.strip().splitlines()) == 1
    assert snapshot(out) == before

    (tmp_path / "val.npz").write_bytes(b"somebody's data")
    foreign = ccjax(*_generate_args(tmp_path), env=env)
    assert foreign.returncode == 2
    assert "already exists" in foreign.stderr
    assert snapshot(tmp_path) == {"val.npz": b"somebody's data"}


def _foreign_npz(path):
    np.savez(path, a=np.zeros(3), b=np.ones((2, 2)))


def _float32_latents(path, source):
    with np.load(source) as npz:
        arrays = dict(npz)
    arrays["original_latents"] = arrays["original_latents"].astype(np.float32)
    np.savez(path, **arrays)


def _truncated(path, source):
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "make", ["missing", "text", "truncated", "foreign", "violating"]
)
def test_info_rejects_bad_files_with_one_line(make, reference, env, tmp_path):
    path = tmp_path / "file.npz"
    source = reference[0] / "val.npz"
    if make == "text":
        path.write_text("not an npz\n")
    elif make == "truncated":
        _truncated(path, source)
    elif make == "foreign":
        _foreign_npz(path)
    elif make == "violating":
        _float32_latents(path, source)
    before = snapshot(tmp_path)
    result = ccjax("info", path, env=env)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(path) in result.stderr
    assert snapshot(tmp_path) == before


def test_show_refuses_bad_input_with_one_line(reference, env, tmp_path):
    foreign = tmp_path / "foreign.npz"
    _foreign_npz(foreign)
    existing = tmp_path / "sheet.png"
    existing.write_bytes(b"keep me")
    source = reference[0] / "val.npz"
    cases = [
        ["show", foreign, "--out", tmp_path / "a.png"],
        ["show", source, "--out", existing],
        ["show", source, "--out", tmp_path / "b.png", "--pairs", "0"],
        ["show", source, "--out", tmp_path / "c.png", "--start", "99"],
        ["show", source, "--out", tmp_path / "no_dir" / "d.png"],
        ["show", source, "--out", tmp_path / "e.gif"],
    ]
    before = snapshot(tmp_path)
    for args in cases:
        result = ccjax(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert snapshot(tmp_path) == before


def test_missing_gl_fails_with_install_hint_before_writing(env, tmp_path):
    # No EGL driver for libglvnd to find: a machine without working GL.
    out = tmp_path / "out"
    broken = {**env, "__EGL_VENDOR_LIBRARY_FILENAMES": "/nonexistent/egl.json"}
    broken.pop("MUJOCO_GL", None)
    result = ccjax(*_generate_args(out), env=broken)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "libegl1" in result.stderr and "libosmesa6" in result.stderr
    assert not out.exists()
