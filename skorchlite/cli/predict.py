"""``skorchlite predict`` and ``skorchlite explain``: a saved model on new images."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from ..names import columns, csv_bytes, pad, visible
from .inputs import backbone_weights, model_weights
from .output import CommandError, check_output_file


def _load_model(path: str, trust_pickle: bool, trusted: list[str] | None) -> Any:
    """A saved model, or one clear line naming the file and the cause.

    Whatever its name, the file is read as data only (:func:`skorchlite.load`,
    which builds only ``trusted`` types beyond its own list); only a pickle
    is unpickled, and only with ``--trust-pickle``, with a warning.
    """
    from ..model_io import PickleFileError, UntrustedTypesError, load
    from ..persistence import error_cause

    model_path = Path(path)
    if not os.path.lexists(model_path):
        raise CommandError(f"model file {str(model_path)!r} does not exist")
    if not model_path.is_file():
        what = "a folder" if model_path.is_dir() else "not a regular file (a device, a FIFO, a socket?)"
        raise CommandError(f"model file {str(model_path)!r} is {what}; give a model file")
    try:
        return load(model_path, trusted=trusted)
    except UntrustedTypesError as err:
        raise CommandError(err.describe(" ".join(f"--trust {name}" for name in err.types))) from err
    except PickleFileError as err:
        if not trust_pickle:
            raise CommandError(
                f"{str(model_path)!r} is a pickle (as joblib.dump writes), not a model file of data only (as "
                "skorchlite.save and skorchlite finetune -o model.skorchlite write): loading it can run any code it "
                "holds, so skorchlite loads it only with --trust-pickle; pass that only for a file from a source you "
                "trust"
            ) from err
    import joblib

    try:
        with warnings.catch_warnings(record=True) as caught:
            model = joblib.load(model_path)
    except Exception as err:  # unpickling arbitrary bytes can raise anything
        raise CommandError(
            f"{str(model_path)!r} is not a model file: neither data only (skorchlite.save) "
            f"nor a pickle joblib can load ({error_cause(err)})"
        ) from err
    print(
        f"warning: {visible(str(model_path))} is a pickle: loading it ran whatever code it holds (--trust-pickle). "
        "Share models as data instead: skorchlite.save(model, 'model.skorchlite').",
        file=sys.stderr,
    )
    for warning in caught:  # another version's pickle: one line each, not Python's two
        print(f"warning: {' '.join(str(warning.message).split())}", file=sys.stderr)
    return model


def predict_command(args: argparse.Namespace) -> int:
    """``skorchlite predict``: each image's class and probability from a saved model.

    Runs on the parsed command line (:func:`skorchlite.cli.build_parser`)
    and returns the exit status, as every verb does.
    """
    model_path = Path(args.model)
    model = _load_model(args.model, args.trust_pickle, args.trust)
    if not hasattr(model, "predict_proba"):
        raise CommandError(f"{model_path.name} holds a {type(model).__name__}, which has no predict_proba")
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    if getattr(final, "multilabel_", False):  # FineTuneClassifier's and OneVsRestClassifier's flag
        raise CommandError(
            f"{model_path.name} holds a multi-label model (a probability per label), and predict shows one class "
            "per image: use the model's predict_proba from Python"
        )
    proba = model.predict_proba(list(args.images))
    classes = model.classes_
    best = proba.argmax(1)
    if args.csv:
        header = ["path", "class", "probability", *(f"p_{c}" for c in classes)]
        rows = [
            [path, classes[k], f"{row[k]:.4f}", *(f"{p:.4f}" for p in row)]
            for path, k, row in zip(args.images, best, proba, strict=True)
        ]
        _print_csv(header, rows)
        return 0
    paths = [visible(path) for path in args.images]
    width = max(map(columns, paths))
    for path, k, row in zip(paths, best, proba, strict=True):
        print(f"{pad(path, width, '<')}  {visible(classes[k])}  {row[k]:.3f}")
    return 0


def _print_csv(header: list[str], rows: list[list[Any]]) -> None:
    """The CSV on stdout: exact values for the program it is piped to (a
    name that is not UTF-8 keeps its bytes), visible ones on a terminal,
    as ``ls`` does, so that a name never drives the terminal."""
    if sys.stdout.isatty():
        header, rows = [visible(cell) for cell in header], [[visible(cell) for cell in row] for row in rows]
    data = csv_bytes(header, rows)
    sys.stdout.flush()
    sys.stdout.buffer.write(data)


def explain_command(args: argparse.Namespace) -> int:
    """``skorchlite explain``: the Grad-CAM overlay of one image as a PNG.

    Runs on the parsed command line (:func:`skorchlite.cli.build_parser`)
    and returns the exit status, as every verb does.
    """
    from ..backbones import list_backbones
    from ..inspect.explainable import resolve_model
    from ..inspect.gradcam import grad_cam

    # MODEL is a file, else a backbone name, whose own weights are then the input.
    model_file = Path(args.model).is_file()
    inputs = {
        "the input IMAGE": args.image,
        **({"the input MODEL": args.model} if model_file else backbone_weights([args.model], "DEFAULT")),
    }
    output = check_output_file(args.output, "-o", (".png",), inputs)
    if model_file:
        if args.image_size is not None:
            raise CommandError("--image-size applies to a backbone name; a saved model uses its own")
        loaded = _load_model(args.model, args.trust_pickle, args.trust)
        # The model rebuilds its backbone: that backbone's own weights are inputs too.
        check_output_file(args.output, "-o", (".png",), {**inputs, **model_weights(loaded)})
        try:
            model = resolve_model(loaded)
        except (TypeError, ValueError) as err:
            raise CommandError(f"{args.model!r}: {err}") from err
    elif args.model in list_backbones():
        model = resolve_model(args.model, args.image_size)
    else:
        raise CommandError(
            f"{args.model!r} is neither a model file nor a backbone name (skorchlite backbones lists them)"
        )
    result = grad_cam(model, [args.image], args.target, layer=args.layer, path=output)
    print(
        f"{visible(args.image)}: predicted {visible(result.predicted[0])} ({result.predicted_probability[0]:.3f}); "
        f"Grad-CAM of {visible(result.target[0])} ({result.target_probability[0]:.3f}) at layer {result.layer!r} "
        f"written to {visible(output)}"
    )
    return 0
