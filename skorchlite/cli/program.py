"""The ``skorchlite`` program: its parser, and how a verb's outcome becomes an exit status."""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ..folds import CLI_WORDS, FoldError
from ..limits import MAX_IMAGE_SIZE, MAX_IMAGE_SIZE_REASON
from ..memory import keep_freed_memory
from ..names import visible
from ..versioning import __version__
from .backbones import backbones_command
from .cache import cache_command, parse_age, parse_size
from .compare import compare_command
from .embed import embed_command
from .evaluate import HEADS, evaluate_command
from .finetune import finetune_command
from .output import CommandError
from .predict import explain_command, predict_command

LAYER_HELP = (
    "layer(s) to embed, pooled and concatenated: node names or shortcuts such as mid, stages, penultimate "
    "(default; skorchlite backbones --layers NAME lists them)"
)
WEIGHTS_HELP = "DEFAULT, a weights member, a checkpoint path, or random-init (a baseline without pretraining)"
MODEL_HELP = (
    "model file of data only (skorchlite.save, skorchlite finetune -o model.skorchlite), or a joblib pickle "
    "with --trust-pickle"
)
TRUST_PICKLE_HELP = (
    "also load a model that is a pickle (joblib.dump): loading one runs any code it holds, so pass this "
    "only for a file from a source you trust"
)
TRUST_HELP = (
    "a type the model file may build beyond the trusted ones, by full name as the refusal names it "
    "(sklearn.tree._tree.Tree for a random forest); repeat for several; only for a file you trust"
)


def _bounded(kind: type, low: float, high: float, why: str, *, above: bool = False) -> Any:
    """An argparse type: a ``kind`` number in [low, high] (``above``: low
    excluded), finite, or one line saying the range and why."""

    def parse(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {visible(repr(value))}"
            ) from None
        if not math.isfinite(number) or number < low or number > high or (above and number == low):
            lower = f"above {low:g}" if above else f"at least {low:g}"
            raise argparse.ArgumentTypeError(
                f"must be {lower} and at most {high:g} ({why}), got {visible(repr(value))}"
            )
        return number

    return parse


_FOLDS = _bounded(int, 2, 10_000, "a fold is a held-out share: 2 at least, and more folds than images is impossible")
_IMAGE_SIZE = _bounded(int, 32, MAX_IMAGE_SIZE, f"the backbones shrink an image 32-fold, and {MAX_IMAGE_SIZE_REASON}")
_EPOCHS = _bounded(int, 1, 10_000, "each epoch is one pass over the images")
_FREEZE_EPOCHS = _bounded(int, 0, 10_000, "head-only epochs before unfreezing; 0 for none")
_BATCH_SIZE = _bounded(int, 1, 4096, "a batch's activations must fit in memory")
_LR = _bounded(float, 0, 1, "above 1 training diverges; usual rates are 1e-5 to 1e-1", above=True)
_VALIDATION_FRACTION = _bounded(
    float, 0, 0.5, "the share of images held out to choose the epoch: 0 for none, at most half"
)
_PATIENCE = _bounded(int, 1, 10_000, "epochs without improvement before stopping")
_SEED = _bounded(int, 0, 2**32 - 1, "random seeds are unsigned 32-bit integers")
_VERBOSE = _bounded(int, 0, 2, "0: quiet, 1: progress on a terminal, 2: always")
_LAYER_GROUPS = _bounded(int, 0, 10_000, "layer groups to train, counted from the output")


def _unfreeze(value: str) -> int | str:
    return value if value == "all" else _LAYER_GROUPS(value)


def _weights(value: str) -> str | None:
    """``--weights``: ``random-init`` (or ``none``) is ``weights=None``."""
    return None if value.lower() in ("random-init", "none") else value


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every verb takes, before or after its name: on the
    program (``top``, with the defaults) and on each verb (no defaults, so
    that one given before the verb is not reset by the verb's parser)."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    parser.add_argument("--debug", action="store_true", default=default(False), help="show tracebacks on errors")
    parser.add_argument(
        "--verbose", type=_VERBOSE, default=default(1), help="0: quiet, 1: progress on a terminal, 2: always"
    )


def _cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache",
        metavar="DIR",
        default=True,
        help="embedding cache folder (default: SKORCHLITE_CACHE, else the user's cache folder; skorchlite cache info)",
    )


def _engine_options(parser: argparse.ArgumentParser) -> None:
    """How the network runs, as the estimators' parameters of the same names
    say; :func:`skorchlite.cli.inputs.engine_params` hands them over."""
    parser.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=_BATCH_SIZE, default=32, help="images per forward pass (default 32)")
    parser.add_argument(
        "--precision", default="float32", help="float32, or bfloat16 where the hardware computes it natively"
    )
    parser.add_argument(
        "--tta", action="store_true", help="test-time augmentation: average with the mirror image (twice the time)"
    )
    _cache_option(parser)
    parser.add_argument("--no-cache", dest="cache", action="store_false", help="compute every embedding, store none")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``skorchlite`` command line, one sub-command per verb.

    Returns
    -------
    argparse.ArgumentParser
        Each verb's namespace holds ``run``, the function that runs it.
    """
    parser = argparse.ArgumentParser(prog="skorchlite", description="Transfer learning for images, with scikit-learn.")
    parser.add_argument("--version", action="version", version=f"skorchlite {__version__}")
    _global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True)

    def verb(name: str, run: Any, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        _global_options(sub, top=False)
        sub.set_defaults(run=run)
        return sub

    evaluate = verb(
        "evaluate", evaluate_command, "cross-validate pretrained backbones + a classifier head on an image folder"
    )
    evaluate.add_argument("dir", nargs="?", help="one sub-folder per class (default: scikit-learn's digits)")
    evaluate.add_argument("--backbone", nargs="+", default=["efficientnet_lite0"], help="one or more backbones")
    evaluate.add_argument("--weights", type=_weights, default="DEFAULT", help=WEIGHTS_HELP)
    evaluate.add_argument(
        "--head",
        choices=HEADS,
        default="voting",
        help='voting (default): one logistic head per layer of --layer (default: "blocks"), their log-probabilities '
        "summed; the others read one layer (default: the penultimate features)",
    )
    evaluate.add_argument("--cv", type=_FOLDS, default=5, help="stratified folds (default 5)")
    evaluate.add_argument("--image-size", type=_IMAGE_SIZE, default=None)
    evaluate.add_argument("--layer", nargs="+", metavar="NAME", help=LAYER_HELP)
    _engine_options(evaluate)
    evaluate.add_argument(
        "--group-duplicates",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep duplicate images (find_duplicates) in one fold; on unless --no-group-duplicates",
    )
    evaluate.add_argument(
        "--report",
        metavar="OUT_DIR",
        help="write index.html (one self-contained page) and the confusion matrix, ROC/PR and error PNGs",
    )
    evaluate.add_argument(
        "--report-images",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="embed the input images in the report (thumbnails, Grad-CAM, misclassified.png); "
        "--no-report-images leaves them out (patient data)",
    )

    compare = verb(
        "compare",
        compare_command,
        "rank frozen-feature and fine-tuning strategies on an image folder, every choice made on inner folds",
    )
    compare.add_argument("dir", help="one sub-folder per class")
    compare.add_argument("--backbone", nargs="+", default=None, help="backbones (default: every offline one)")
    compare.add_argument("--cv", type=_FOLDS, default=5, help="outer grouped folds (default 5)")
    compare.add_argument("--inner-cv", type=_FOLDS, default=5, help="inner grouped folds (default 5)")
    compare.add_argument("--image-size", type=_IMAGE_SIZE, default=None)
    compare.add_argument(
        "--finetune",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include fine-tuning (minutes per fold on a CPU); on unless --no-finetune",
    )
    compare.add_argument(
        "--group-duplicates",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep duplicate images (find_duplicates) in one fold; on unless --no-group-duplicates",
    )

    embed = verb("embed", embed_command, "write the embeddings of an image folder to .npy, .csv or .parquet")
    embed.add_argument("dir")
    embed.add_argument("-o", "--output", required=True, help="features file: .npy, .csv or .parquet")
    embed.add_argument("--index", help="for .npy: the .csv of paths and labels (default: same name; never replaced)")
    embed.add_argument("--backbone", default="efficientnet_lite0")
    embed.add_argument("--weights", type=_weights, default="DEFAULT", help=WEIGHTS_HELP)
    embed.add_argument("--image-size", type=_IMAGE_SIZE, default=None)
    embed.add_argument("--layer", nargs="+", metavar="NAME", help=LAYER_HELP)
    _engine_options(embed)

    finetune = verb("finetune", finetune_command, "fine-tune a backbone on an image folder and save the model")
    finetune.add_argument("dir")
    finetune.add_argument(
        "-o",
        "--output",
        required=True,
        help="model file: .skorchlite (skorchlite.save's, for skorchlite.load), or .pt or .pth "
        "(FineTuneClassifier.save_weights'); data only (safe to share), never a pickle",
    )
    finetune.add_argument("--backbone", default="efficientnet_lite0")
    finetune.add_argument("--weights", type=_weights, default="DEFAULT", help=WEIGHTS_HELP)
    # FineTuneClassifier's defaults (tests/test_cli_conventions.py holds them equal).
    finetune.add_argument("--unfreeze", type=_unfreeze, default="all", help="layer groups to train, or 'all'")
    finetune.add_argument("--epochs", type=_EPOCHS, default=8)
    finetune.add_argument("--freeze-epochs", type=_FREEZE_EPOCHS, default=2)
    finetune.add_argument("--lr", type=_LR, default=5e-3)
    finetune.add_argument("--image-size", type=_IMAGE_SIZE, default=None)
    _engine_options(finetune)
    finetune.add_argument("--validation-fraction", type=_VALIDATION_FRACTION, default=0.1)
    finetune.add_argument("--n-iter-no-change", type=_PATIENCE, default=None)
    finetune.add_argument("--balanced", action="store_true", help="class_weight='balanced'")
    finetune.add_argument("--random-state", type=_SEED, default=0)
    finetune.add_argument(
        "--report", metavar="OUT_DIR", help="write index.html (one self-contained page) and the learning curves PNG"
    )
    finetune.add_argument(
        "--keep-partial", action="store_true", help="on Ctrl-C, still save the best complete epoch (exit status 130)"
    )

    predict = verb("predict", predict_command, "predict the class of images with a saved model")
    predict.add_argument("model", help=MODEL_HELP)
    predict.add_argument("images", nargs="+")
    predict.add_argument("--csv", action="store_true", help="CSV with every class's probability")
    predict.add_argument("--trust-pickle", action="store_true", help=TRUST_PICKLE_HELP)
    predict.add_argument("--trust", action="append", metavar="TYPE", help=TRUST_HELP)

    explain = verb(
        "explain", explain_command, "Grad-CAM of a saved model (or a backbone's ImageNet classes) on one image"
    )
    explain.add_argument("model", help=MODEL_HELP + ", or a backbone name for its ImageNet classes")
    explain.add_argument("image")
    explain.add_argument("-o", "--output", required=True, help="overlay PNG")
    explain.add_argument("--target", help="class to explain (default: the predicted one)")
    explain.add_argument("--layer", help="feature map (default: the last before pooling)")
    explain.add_argument("--image-size", type=_IMAGE_SIZE, default=None, help="input side, for a backbone name")
    explain.add_argument("--trust-pickle", action="store_true", help=TRUST_PICKLE_HELP)
    explain.add_argument("--trust", action="append", metavar="TYPE", help=TRUST_HELP)

    backbones = verb(
        "backbones", backbones_command, "list every source's backbones and whether their weights are on this machine"
    )
    backbones.add_argument("--offline", action="store_true", help="only those that work offline")
    backbones.add_argument("--layers", metavar="NAME", help="list the layer names and shortcuts of backbone NAME")

    cache = verb("cache", cache_command, "the embedding cache: where it is and its size (info), or make it smaller")
    cache.add_argument("action", choices=("info", "prune"))
    cache.add_argument(
        "--max-size", type=parse_size, metavar="SIZE", help="prune: remove the least recently used entries down to SIZE"
    )
    cache.add_argument(
        "--older-than", type=parse_age, metavar="AGE", help="prune: remove entries unused for AGE (30d, 12h, 90m)"
    )
    _cache_option(cache)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args: Any = build_parser().parse_args(argv)
    args.argv = argv  # the command line, as the report shows it
    try:
        status = args.run(args)
        sys.stdout.flush()  # here, so that a closed pipe is caught below
        return status
    except BrokenPipeError:
        # The reader is gone (``skorchlite backbones | head``): stop quietly,
        # as a Unix tool killed by SIGPIPE does.
        _silence_stdout()
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        print(f"skorchlite {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        print(f"skorchlite {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 1


# What a user's input or machine can cause; any other exception is a bug.
_EXPECTED = (CommandError, ValueError, TypeError, OSError, RuntimeError, ImportError, ArithmeticError)


def _one_line(err: Exception) -> str:
    """The message of ``err`` as the one line a user reads: its cause and its fix."""
    if isinstance(err, FoldError):
        message = err.worded(CLI_WORDS)
    elif isinstance(err, MemoryError):
        message = (
            f"out of memory ({err or 'MemoryError'}); use a smaller --image-size or --batch-size, or a "
            "machine with more memory"
        )
    elif isinstance(err, _EXPECTED) or _pillow_limit(err):
        message = str(err) or type(err).__name__
    else:
        message = (
            f"internal error, a bug in skorchlite ({type(err).__name__}: {err}); rerun with --debug for the "
            "traceback, and report it"
        )
    return visible(" ".join(message.splitlines()))


def _pillow_limit(err: Exception) -> bool:
    """Pillow's refusal of an image beyond ``PIL.Image.MAX_IMAGE_PIXELS``
    (looked up, not imported: Pillow raised it, so Pillow is loaded)."""
    image = sys.modules.get("PIL.Image")
    return image is not None and isinstance(err, (image.DecompressionBombError, image.DecompressionBombWarning))


def _silence_stdout() -> None:
    """Point stdout at /dev/null, or the interpreter's last flush at exit
    reports the broken pipe again."""
    with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def run() -> int:
    """The ``skorchlite`` program: :func:`main` in a process that keeps
    freed memory for the next batch (:func:`skorchlite.memory.keep_freed_memory`).

    A program owns its process, so it may tune the allocator where a
    library called from someone else's code may not.
    """
    keep_freed_memory()
    return main()
