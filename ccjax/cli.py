"""The ``ccjax`` command: generate a dataset, look at it, check it.

``ccjax generate --out DIR``
    Write the train/val/test npz files (resumable; rerun the same command
    after an interruption).
``ccjax show FILE --out SHEET.png`` (or ``.jpg``)
    Draw a contact sheet of before/after pairs with their labels and latents.
``ccjax info FILE``
    Check a file against the format of the published dataset and summarise it.

``generate`` keeps JAX's compiled code in ``$JAX_COMPILATION_CACHE_DIR``,
by default ``~/.cache/ccjax/jax``, so that later runs start faster.

Exit status: 0 on success; 2 for bad arguments, output that would be
overwritten, or a file that is unreadable or violates the format; 1 when the
machine cannot render (no headless OpenGL); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from ccjax import export, render

EXIT_USAGE = 2
EXIT_RUNTIME = 1
EXIT_INTERRUPTED = 130
_LABEL_NAMES = ("none", "red", "green", "blue", "arm")
# Contact sheets as PNG (exact) or JPEG (small enough to commit or share).
_SHEET_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


class _Parser(argparse.ArgumentParser):
    """Argument parser whose errors are one line on stderr, with status 2."""

    def error(self, message: str):
        """Report a usage error and exit."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _quality(text: str) -> int:
    value = _integer(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be in [1, 100], got {text}")
    return value


def _seed(text: str) -> int:
    value = _integer(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32), got {text}")
    return value


def _probabilities(text: str) -> tuple[float, ...]:
    try:
        probs = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not numbers: {text!r}") from None
    if len(probs) != 5 or min(probs) < 0 or not np.isclose(sum(probs), 1.0):
        raise argparse.ArgumentTypeError(
            f"need 5 non-negative probabilities summing to 1, got {text!r}"
        )
    return probs


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ccjax`` command."""
    defaults = export.ExportConfig()
    parser = _Parser(prog="ccjax", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser(
        "generate",
        help="write a dataset of npz files",
        description="Write train/val/test npz files; rerun to resume.",
    )
    gen.add_argument("--out", required=True, type=Path, help="output directory")
    gen.add_argument(
        "--seed",
        type=_seed,
        default=defaults.seed,
        help="root of all randomness, 0 to 2**32-1 (default %(default)s)",
    )
    for split, default in [
        ("train", defaults.n_train),
        ("val", defaults.n_val),
        ("test", defaults.n_test),
    ]:
        gen.add_argument(
            f"--{split}",
            type=_positive,
            default=default,
            metavar="N",
            help=f"pairs in the {split} split (default %(default)s)",
        )
    gen.add_argument(
        "--shards",
        type=_positive,
        default=defaults.n_shards,
        help="files of the training split; 1 writes train.npz (default %(default)s)",
    )
    gen.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="rendering processes (default: one per core)",
    )
    gen.add_argument(
        "--quality",
        type=_quality,
        default=defaults.quality,
        help="JPEG quality 1-100 (default %(default)s)",
    )
    gen.add_argument(
        "--label-probs",
        type=_probabilities,
        default=None,
        metavar="P0,P1,P2,P3,P4",
        help="probabilities of labels none, red, green, blue, arm (default uniform)",
    )
    gen.add_argument(
        "--multisamples",
        type=_non_negative,
        default=None,
        help="anti-aliasing samples per pixel, 0 for none (default: the scene's)",
    )
    gen.add_argument(
        "--shadows",
        action="store_true",
        help="draw shadows (2-3x slower on a software renderer)",
    )
    gen.add_argument(
        "--overwrite", action="store_true", help="replace existing output in --out"
    )

    show = commands.add_parser(
        "show",
        help="draw a contact sheet of pairs",
        description="Draw before/after pairs of an npz file with their labels.",
    )
    show.add_argument("file", type=Path, help="an npz file")
    show.add_argument(
        "--out", required=True, type=Path, help="PNG or JPEG file to write"
    )
    show.add_argument("--pairs", type=_positive, default=8, help="rows to draw")
    show.add_argument("--start", type=_non_negative, default=0, help="first pair")
    show.add_argument("--overwrite", action="store_true", help="replace --out")

    info = commands.add_parser(
        "info",
        help="check a file against the format and summarise it",
        description="Validate an npz file against the published format; exit 2 if not.",
    )
    info.add_argument("file", type=Path, help="an npz file")
    info.add_argument(
        "--images",
        type=_non_negative,
        default=None,
        metavar="K",
        help="decode the images of the first K pairs only (default: all)",
    )
    return parser


def _fail(message: str, status: int = EXIT_USAGE) -> int:
    sys.stderr.write(f"ccjax: error: {message}\n")
    return status


def _use_compilation_cache() -> None:
    """Keep compiled samplers on disk, so that a rerun starts twice as fast.

    JAX reads ``JAX_COMPILATION_CACHE_DIR`` itself; when it is unset the
    command uses ``ccjax/jax`` under the user's cache directory. The library
    never does this on its own: where compiled code goes is the caller's
    choice.
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    jax.config.update("jax_compilation_cache_dir", str(Path(base) / "ccjax" / "jax"))


def _generate(args: argparse.Namespace) -> int:
    config = export.ExportConfig(
        seed=args.seed,
        n_train=args.train,
        n_val=args.val,
        n_test=args.test,
        n_shards=args.shards,
        quality=args.quality,
        label_probs=args.label_probs,
        multisamples=args.multisamples,
        shadows=args.shadows,
    )
    # Checks everything that can fail (OpenGL included) before writing.
    plan = export.prepare_export(args.out, config, overwrite=args.overwrite)
    if not plan.todo:
        print(f"{args.out}: all {len(plan.shards)} files already complete")
        return 0
    _use_compilation_cache()

    with tqdm(
        total=plan.total_pairs,
        initial=plan.done_pairs,
        unit="pair",
        desc="generating",
        dynamic_ncols=True,
    ) as bar:
        summary = export.run_export(plan, workers=args.workers, progress=bar.update)
    rate = summary.pairs_written / summary.seconds
    skipped = f", kept {len(summary.files_skipped)} complete" if plan.done else ""
    print(
        f"wrote {len(summary.files_written)} files ({summary.pairs_written} pairs) "
        f"to {summary.out_dir}{skipped} in {summary.seconds:.1f} s "
        f"({rate:.1f} pairs/s)"
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.overwrite:
        return _fail(f"{args.out} exists; use --overwrite to replace it")
    image_format = _SHEET_FORMATS.get(args.out.suffix.lower())
    if image_format is None:
        return _fail(f"--out must name a .png or .jpg file, got {args.out}")
    sheet = export.contact_sheet(args.file, pairs=args.pairs, start=args.start)
    try:
        with export.atomic_file(args.out) as f:
            sheet.save(f, format=image_format, quality=90)
    except OSError as err:
        return _fail(f"cannot write {args.out}: {err.strerror or err}")
    print(f"wrote {args.out} ({sheet.width}x{sheet.height} pixels)")
    return 0


def _info(args: argparse.Namespace) -> int:
    report = export.validate_file(args.file, max_pairs=args.images)
    print(f"{report.path}: {report.n_pairs} pairs")
    if report.n_pairs:
        counts = ", ".join(
            f"{name} {count}"
            for name, count in zip(
                ["none", "red", "green", "blue", "arm"],
                report.label_counts,
                strict=True,
            )
        )
        print(f"  labels: {counts}")
        print(
            f"  images: S{report.image_bytes}, "
            f"{report.images_checked} decoded as {render.IMAGE_SIZE}x"
            f"{render.IMAGE_SIZE} RGB JPEG"
        )
    for problem in report.problems:
        print(f"  violation: {problem}")
    if not report.valid:
        return _fail(
            f"{report.path} violates the format: {len(report.problems)} problem(s), "
            f"first: {report.problems[0]}"
        )
    print("  valid")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ccjax`` command.

    Args:
        argv: the arguments after the program name; ``None`` reads
            ``sys.argv``.

    Returns:
        The exit status (also passed to ``sys.exit`` by the console script).
    """
    args = build_parser().parse_args(argv)
    handlers = {"generate": _generate, "show": _show, "info": _info}
    try:
        return handlers[args.command](args)
    except export.ExportError as err:
        return _fail(str(err))
    except render.GLUnavailableError as err:
        return _fail(str(err), EXIT_RUNTIME)
    except KeyboardInterrupt:
        return _fail("interrupted; rerun the same command to resume", EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
