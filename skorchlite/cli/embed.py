"""``skorchlite embed``: the embeddings of an image folder as .npy, .csv or .parquet."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from ..files import write_atomic
from ..names import csv_bytes, visible
from .apart import check_cache_apart
from .inputs import announce_weights, backbone_weights, engine_params, layer_option, load_folder, weights_file
from .output import CommandError, check_output_file, save_bytes

EMBED_FORMATS = (".npy", ".csv", ".parquet")


def embed_command(args: argparse.Namespace) -> int:
    """``skorchlite embed``: write a folder's embeddings with their paths and labels.

    Runs on the parsed command line (:func:`skorchlite.cli.build_parser`)
    and returns the exit status, as every verb does.
    """
    from ..extractor import PretrainedFeatureExtractor

    inputs = {
        "the input DIR": args.dir,
        "the --weights file": weights_file(args.weights),
        **backbone_weights([args.backbone], args.weights),
    }
    out = check_output_file(args.output, "-o", EMBED_FORMATS, inputs)
    suffix = out.suffix.lower()
    index = _embed_index(args, out, inputs)
    check_cache_apart(inputs, args.cache)
    if suffix == ".parquet":
        _require_parquet()
    X, y = load_folder(args.dir)
    if suffix == ".parquet":
        for path in X:
            if not _encodable(path):
                raise CommandError(
                    f"{path!r} is not valid UTF-8, which .parquet requires of its strings; rename the file, or "
                    "write .npy or .csv (which keep the name's bytes)"
                )
    announce_weights(args.backbone, args.weights)
    extractor = PretrainedFeatureExtractor(
        backbone=args.backbone,
        weights=args.weights,
        layer=layer_option(args.layer),
        image_size=args.image_size,
        verbose=args.verbose,
        **engine_params(args),
    )
    features = extractor.fit_transform(X)
    if index is not None:
        listing = csv_bytes(["path", "label"], zip(X, y, strict=True))  # before any write: both files, or neither
        save_bytes(out, lambda f: np.save(f, features, allow_pickle=False))
        write_atomic(index, listing)
        print(
            f"Wrote {features.shape[0]} x {features.shape[1]} embeddings to {visible(out)}, "
            f"paths and labels to {visible(index)}"
        )
        return 0
    names = extractor.get_feature_names_out()
    if suffix == ".csv":
        rows = ([path, label, *vector] for path, label, vector in zip(X, y, features.tolist(), strict=True))
        write_atomic(out, csv_bytes(["path", "label", *names], rows))
    else:
        import pandas as pd

        # From the array, not from rows of Python floats: the columns stay float32.
        table = pd.DataFrame(features, columns=names)
        table.insert(0, "label", list(y))
        table.insert(0, "path", list(X))
        save_bytes(out, table.to_parquet)
    print(
        f"Wrote {features.shape[0]} embeddings of {features.shape[1]} features with paths and labels to {visible(out)}"
    )
    return 0


def _embed_index(args: argparse.Namespace, out: Path, inputs: dict[str, str | None]) -> Path | None:
    """Where a .npy output's paths and labels go: ``--index``, or a .csv of
    the same name, which must not exist (the user did not name it)."""
    if out.suffix.lower() != ".npy":
        if args.index is not None:
            raise CommandError(f"--index is for a .npy output; {out.name} holds the paths and labels itself")
        return None
    if args.index is None:
        index = out.with_suffix(".csv")
        if os.path.lexists(index):
            raise CommandError(
                f"{str(index)!r} exists: a .npy output's paths and labels go to a .csv of the same name; "
                f"replace it with --index {index}, or give --index another .csv"
            )
    else:
        index = Path(args.index)
    return check_output_file(str(index), "--index", (".csv",), {**inputs, "-o": str(out)})


def _require_parquet() -> None:
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as err:
        raise CommandError(f"writing .parquet needs pandas and pyarrow ({err}); use .npy or .csv") from err


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
