"""Fine-tuning on BUSI: accuracy of the two strategies, and training speed.

Prints, in one run:

1. Stratified 5-fold CV (shuffle, random_state=0) accuracy and balanced
   accuracy (mean ± std) of
   (1) PretrainedFeatureExtractor + LogisticRegression (class_weight="balanced"),
   (2) FineTuneClassifier head only, (3) last 2 layer groups, (4) all layers.
   Target: the best fine-tuned setting beats (1) by >= 3 points of balanced
   accuracy.
2. Seconds per training epoch (all layers unfrozen) of FineTuneClassifier and
   of a plain hand-written PyTorch loop doing the same work: same model,
   images, augmentation, batch size and image size. Target: ratio <= 1.1.

Full-size fine-tuning of 5 folds does not fit a 2-core CPU in reasonable
time, so the fine-tuned settings use ``--image-size`` (default 128) and
``--epochs`` (default 5); the extractor baseline uses the weights' own 224 px.

Run: ``python benchmarks/finetune.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "busi"


def cross_validate(make, X, y, folds: int) -> dict[str, np.ndarray]:
    from sklearn.model_selection import StratifiedKFold, cross_validate as sk_cross_validate

    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    scores = sk_cross_validate(make(), X, y, cv=cv, scoring=["accuracy", "balanced_accuracy"])
    return {m: scores[f"test_{m}"] for m in ("accuracy", "balanced_accuracy")} | {"seconds": scores["fit_time"].sum()}


def hand_written_epoch(X, y, image_size: int, batch_size: int) -> float:
    """One epoch as a tutorial writes it: Dataset + DataLoader, all layers trained."""
    from PIL import Image

    from skorchlite.backbones import get_backbone
    from skorchlite.training import default_augmentation

    backbone = get_backbone("efficientnet_lite0", copy_model=True)
    preprocessing = backbone.preprocessing.resized(image_size)
    augment, transform = default_augmentation(preprocessing), preprocessing.transform()
    labels = {c: i for i, c in enumerate(sorted(set(y)))}

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(X)

        def __getitem__(self, i):
            image = Image.open(X[i]).convert("RGB")
            return transform(augment(image)), labels[y[i]]

    model = torch.nn.Sequential(backbone.model, torch.nn.Linear(backbone.embedding_dim, len(labels)))
    model.requires_grad_(True).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    loader = torch.utils.data.DataLoader(Images(), batch_size=batch_size, shuffle=True)
    start = time.perf_counter()
    for images, target in loader:
        loss = torch.nn.functional.cross_entropy(model(images), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="150 images, 2 folds, 1 epoch")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"BUSI not found at {args.data}; pass --data DIR", file=sys.stderr)
        return 2

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from skorchlite import FineTuneClassifier, PretrainedFeatureExtractor
    from skorchlite.datasets import load_image_folder

    warnings.simplefilter("ignore", UserWarning)  # BUSI's README.md beside the class folders
    paths, labels = load_image_folder(args.data)
    X, y = np.asarray(paths, dtype=object), np.asarray(labels)
    if args.quick:
        keep = np.random.default_rng(0).permutation(len(y))[:150]
        X, y, args.folds, args.epochs = X[keep], y[keep], 2, 1
    print(f"BUSI: {len(y)} images, classes {dict(zip(*np.unique(y, return_counts=True)))}")
    print(f"CPU threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"fine-tuning at {args.image_size} px for 1 + {args.epochs} epochs, batch {args.batch_size}")

    def finetune(unfreeze):
        return lambda: FineTuneClassifier(
            unfreeze=unfreeze,
            epochs=args.epochs,
            freeze_epochs=1,
            image_size=args.image_size,
            batch_size=args.batch_size,
            class_weight="balanced",
            lr=2e-3,
            random_state=0,
        )

    settings = {
        "(1) extractor + logistic regression (224 px)": lambda: make_pipeline(
            PretrainedFeatureExtractor(), LogisticRegression(max_iter=3000, class_weight="balanced")
        ),
        "(2) fine-tune head only": finetune(0),
        "(3) fine-tune last 2 groups": finetune(2),
        "(4) fine-tune all layers": finetune("all"),
    }
    results = {}
    print(f"\n{'setting':48} {'accuracy':>15} {'balanced acc.':>15} {'fit s':>7}")
    for name, make in settings.items():
        r = results[name] = cross_validate(make, X, y, args.folds)
        print(
            f"{name:48} {r['accuracy'].mean():.3f} ± {r['accuracy'].std():.3f}   "
            f"{r['balanced_accuracy'].mean():.3f} ± {r['balanced_accuracy'].std():.3f} {r['seconds']:7.0f}",
            flush=True,
        )
    baseline = results[next(iter(settings))]["balanced_accuracy"].mean()
    best_name = max(list(settings)[1:], key=lambda n: results[n]["balanced_accuracy"].mean())
    gain = results[best_name]["balanced_accuracy"].mean() - baseline
    print(f"\nbest fine-tuned: {best_name}: {100 * gain:+.1f} points of balanced accuracy over (1) "
          f"(target >= +3.0): {'PASS' if gain >= 0.03 else 'FAIL'}")

    # Speed: one epoch of all layers on the same images, measured back to back.
    n = min(len(y), 320)
    Xs, ys = list(X[:n]), list(y[:n])
    ours = FineTuneClassifier(
        unfreeze="all", epochs=1, freeze_epochs=0, image_size=args.image_size, batch_size=args.batch_size,
        validation_fraction=0, random_state=0,
    ).fit(Xs, ys).history_[-1]["seconds"]
    hand = hand_written_epoch(Xs, ys, args.image_size, args.batch_size)
    print(f"\nseconds per epoch, {n} images, all layers, {args.image_size} px: skorchlite {ours:.1f}, "
          f"hand-written loop {hand:.1f}, ratio {ours / hand:.2f} (target <= 1.1): "
          f"{'PASS' if ours <= 1.1 * hand else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
