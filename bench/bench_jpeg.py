"""Compare JPEG encoders on rendered CausalCircuit frames: speed, size, fidelity.

Candidates, all built on libjpeg-turbo:

* Pillow (already a dependency; bundles libjpeg-turbo in its wheels),
* simplejpeg (bundles libjpeg-turbo; NumPy in, bytes out),
* PyTurboJPEG (a ctypes wrapper; needs the system's libturbojpeg, version 3
  or later for PyTurboJPEG 2; set TURBOJPEG_LIB to its path if it is not
  found automatically).

Each is timed on the same frames at the same quality and chroma subsampling,
and its output is decoded with Pillow (the authors' loader) to report the
PSNR against the raw render.

Usage: python bench/bench_jpeg.py [--quality 95] [--frames 16]
"""

from __future__ import annotations

import argparse
import io
import os

import numpy as np
from _common import record, timeit
from PIL import Image

from ccjax import physics, render


def frames(n: int) -> list[np.ndarray]:
    """Renders of ``n`` states spread along the arm's arc, lights varied."""
    model = physics.load_model()
    rng = np.random.default_rng(0)
    arm = np.linspace(0.0, 1.0, n)
    finger = np.asarray(physics.arm_qpos(arm), dtype=np.float64)
    pressed = np.asarray(physics.press(arm), dtype=np.float64)
    qpos = physics.scene_qpos(finger, pressed, model)
    with render.SceneRenderer(model) as renderer:
        return [renderer.render(q, rng.uniform(size=3)) for q in qpos]


def encoders(quality: int) -> dict[str, object]:
    """Name -> function(image) -> bytes, for every encoder that loads here."""
    result = {}

    def pillow(image, subsampling):
        buffer = io.BytesIO()
        Image.fromarray(image).save(
            buffer, format="JPEG", quality=quality, subsampling=subsampling
        )
        return buffer.getvalue()

    result["pillow 4:2:0"] = lambda image: pillow(image, 2)
    result["pillow 4:4:4"] = lambda image: pillow(image, 0)

    try:
        import simplejpeg

        result["simplejpeg 4:2:0"] = lambda image: simplejpeg.encode_jpeg(
            image, quality=quality, colorsubsampling="420"
        )
        result["simplejpeg 4:4:4"] = lambda image: simplejpeg.encode_jpeg(
            image, quality=quality, colorsubsampling="444"
        )
    except ImportError as err:
        record("jpeg", "simplejpeg", float("nan"), "ms/image", f"unavailable: {err}")

    try:
        import turbojpeg

        jpeg = turbojpeg.TurboJPEG(os.environ.get("TURBOJPEG_LIB"))
        result["pyturbojpeg 4:2:0"] = lambda image: jpeg.encode(
            image,
            quality=quality,
            pixel_format=turbojpeg.TJPF_RGB,
            jpeg_subsample=turbojpeg.TJSAMP_420,
        )
    except (ImportError, OSError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0]
        record(
            "jpeg", "pyturbojpeg", float("nan"), "ms/image", f"unavailable: {reason}"
        )
    return result


def psnr(image: np.ndarray, jpeg: bytes) -> float:
    """Peak signal-to-noise ratio (dB) of the Pillow-decoded JPEG."""
    decoded = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), np.float64)
    mse = np.mean((decoded - image) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=int, default=render.DEFAULT_QUALITY)
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args()

    images = frames(args.frames)
    note = f"quality {args.quality}, {args.frames} frames 512x512"
    for name, encode in encoders(args.quality).items():
        seconds = timeit(lambda encode=encode: [encode(im) for im in images])
        outputs = [encode(im) for im in images]
        size = np.mean([len(b) for b in outputs]) / 1024
        quality = np.mean([psnr(im, b) for im, b in zip(images, outputs, strict=True)])
        record("jpeg", f"{name} encode", 1e3 * seconds / len(images), "ms/image", note)
        record("jpeg", f"{name} size", size, "KiB/image", note)
        record("jpeg", f"{name} psnr", quality, "dB", note)


if __name__ == "__main__":
    main()
