"""Fine-tuning on BUSI: accuracy of the two strategies, and training speed.

Prints, in one run:

0. ``--part select`` only: how the settings were chosen without looking at
   the test folds. Fold 0's training set of the 5-fold split below is split
   again (80/20, stratified, random_state=1); each candidate setting trains
   on the 80 % and is scored on the 20 %. The benchmark's settings are the
   best candidates there.
1. Stratified 5-fold CV (shuffle, random_state=0) accuracy and balanced
   accuracy (mean ± std) of
   (1) PretrainedFeatureExtractor + LogisticRegression (class_weight="balanced"),
   (2) FineTuneClassifier head only (on cached embeddings: ``augment=None``,
   40 epochs at lr 1e-2), (3) last 2 layer groups, (4) all layers (both:
   ``--freeze-epochs`` head epochs, then ``--epochs`` at ``--lr``, default
   augmentation). All use class_weight="balanced".
   Target: the best fine-tuned setting beats (1) by >= 3 points of balanced
   accuracy.
2. Seconds per training epoch (all layers unfrozen) of FineTuneClassifier and
   of a plain hand-written PyTorch loop doing the same work: same model,
   images, augmentation, batch size and image size. Target: ratio <= 1.1.

Run: ``python benchmarks/finetune.py`` (``--quick`` for a smoke run;
``--part accuracy``, ``--part speed`` or ``--part select`` for one part).
On a 2-core CPU the accuracy part takes about an hour at 224 px.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import DEFAULT_DATA, load_busi, machine, stratified_subset


def cross_validate(make, X, y, folds: int) -> dict[str, np.ndarray]:
    from sklearn.model_selection import StratifiedKFold, cross_validate as sk_cross_validate

    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    scores = sk_cross_validate(make(), X, y, cv=cv, scoring=["accuracy", "balanced_accuracy"])
    return {m: scores[f"test_{m}"] for m in ("accuracy", "balanced_accuracy")} | {"seconds": scores["fit_time"].sum()}


def inner_split(X, y):
    """Fold 0's training set of the benchmark's 5-fold split, split 80/20 again."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    train, _ = next(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    return train_test_split(X[train], y[train], test_size=0.2, stratify=y[train], random_state=1)


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


def settings(args, selection: bool = False) -> dict[str, Callable[[], Any]]:
    """The four settings of the accuracy table, as estimator factories; with
    ``selection``, also the candidates that only the selection tries."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from skorchlite import FineTuneClassifier, PretrainedFeatureExtractor

    def finetune(**params):
        common = dict(image_size=args.image_size, batch_size=args.batch_size, class_weight="balanced", random_state=0)
        return lambda: FineTuneClassifier(**common | params)

    tuned = dict(epochs=args.epochs, freeze_epochs=args.freeze_epochs, lr=args.lr)
    table = {
        "(1) extractor + logistic regression": lambda: make_pipeline(
            PretrainedFeatureExtractor(image_size=args.image_size),
            LogisticRegression(max_iter=3000, class_weight="balanced"),
        ),
        "(2) fine-tune head only (embeddings)": finetune(unfreeze=0, augment=None, epochs=40, lr=1e-2),
        "(3) fine-tune last 2 groups": finetune(unfreeze=2, **tuned),
        "(4) fine-tune all layers": finetune(unfreeze="all", **tuned),
    }
    if selection:
        table["all layers, batchnorm='train'"] = finetune(unfreeze="all", batchnorm="train", **tuned)
    return table


def select_table(X, y, args) -> None:
    """Part 0: every candidate on the inner split of fold 0's training set."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    X_train, X_valid, y_train, y_valid = inner_split(X, y)
    print(f"selection: {len(y_train)} training, {len(y_valid)} validation images from fold 0's training set")
    print(f"\n{'candidate':48} {'accuracy':>9} {'balanced acc.':>14} {'fit s':>7}")
    for name, make in settings(args, selection=True).items():
        start = time.perf_counter()
        predicted = make().fit(list(X_train), list(y_train)).predict(list(X_valid))
        print(
            f"{name:48} {accuracy_score(y_valid, predicted):9.3f} {balanced_accuracy_score(y_valid, predicted):14.3f} "
            f"{time.perf_counter() - start:7.0f}",
            flush=True,
        )


def accuracy_table(X, y, args) -> None:
    """Part 1: cross-validated scores of the four settings, and the verdict."""
    table = settings(args)
    print(f"fine-tuning at {args.image_size} px, {args.freeze_epochs} head epochs + {args.epochs} epochs, "
          f"batch {args.batch_size}, lr {args.lr:g}, class_weight='balanced'; "
          f"{args.folds}-fold StratifiedKFold(shuffle, random_state=0)")
    results = {}
    print(f"\n{'setting':48} {'accuracy':>15} {'balanced acc.':>15} {'fit s':>7}")
    for name, make in table.items():
        r = results[name] = cross_validate(make, X, y, args.folds)
        print(
            f"{name:48} {r['accuracy'].mean():.3f} ± {r['accuracy'].std():.3f}   "
            f"{r['balanced_accuracy'].mean():.3f} ± {r['balanced_accuracy'].std():.3f} {r['seconds']:7.0f}",
            flush=True,
        )
    baseline = results[next(iter(table))]["balanced_accuracy"].mean()
    best_name = max(list(table)[1:], key=lambda n: results[n]["balanced_accuracy"].mean())
    gain = results[best_name]["balanced_accuracy"].mean() - baseline
    print(f"\nbest fine-tuned: {best_name}: {100 * gain:+.1f} points of balanced accuracy over (1) "
          f"(target >= +3.0): {'PASS' if gain >= 0.03 else 'FAIL'}")


def speed_table(X, y, args) -> None:
    """Part 2: seconds per epoch, ours and the hand-written loop, alternated."""
    from skorchlite import FineTuneClassifier

    Xs, ys = stratified_subset(X, y, 320)  # not the first 320: BUSI's files are sorted by class
    Xs, ys, n = list(Xs), list(ys), len(ys)

    def ours() -> float:
        clf = FineTuneClassifier(
            unfreeze="all", epochs=1, freeze_epochs=0, image_size=args.image_size, batch_size=args.batch_size,
            validation_fraction=0, random_state=0,
        )
        return clf.fit(Xs, ys).history_[-1]["seconds"]

    def hand() -> float:
        return hand_written_epoch(Xs, ys, args.image_size, args.batch_size)

    # Alternated, so that a slow spell of a noisy machine hits both alike;
    # the first round also warms up oneDNN's kernels for both.
    times: dict[str, list[float]] = {"skorchlite": [], "hand-written": []}
    for _ in range(args.repeats):
        times["skorchlite"].append(ours())
        times["hand-written"].append(hand())
    median = {k: float(np.median(v)) for k, v in times.items()}
    print(f"\nseconds per epoch, {n} images, all layers, {args.image_size} px, batch {args.batch_size}, "
          f"median of {args.repeats} alternated runs:")
    for name, values in times.items():
        print(f"  {name:13} {median[name]:6.1f}   (runs: {', '.join(f'{v:.1f}' for v in values)})")
    ratio = median["skorchlite"] / median["hand-written"]
    print(f"ratio skorchlite / hand-written {ratio:.2f} (target <= 1.1): {'PASS' if ratio <= 1.1 else 'FAIL'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--freeze-epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="alternated runs of each loop in the speed part")
    parser.add_argument("--part", choices=("all", "accuracy", "speed", "select"), default="all")
    parser.add_argument("--quick", action="store_true", help="150 images, 2 folds, 1 epoch, 1 repeat")
    args = parser.parse_args()

    X, y = load_busi(args.data, 150 if args.quick else None)
    if args.quick:
        args.folds, args.epochs, args.freeze_epochs, args.repeats = 2, 1, 1, 1
    print(f"machine: {machine()}")
    print(f"BUSI: {len(y)} images, classes {dict(zip(*np.unique(y, return_counts=True)))}")
    if args.part == "select":
        select_table(X, y, args)
    if args.part in ("all", "accuracy"):
        accuracy_table(X, y, args)
    if args.part in ("all", "speed"):
        speed_table(X, y, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
