"""Fine-tuning on BUSI: accuracy of the two strategies, and training speed.

Prints, in one run:

0. ``--part select`` only: how the settings were chosen without looking at
   the test folds. Fold 0's training set of the 5-fold split below is split
   again (80/20 by duplicate group, stratified, random_state=1); each
   candidate setting trains on the 80 % and is scored on the 20 %. The
   benchmark's settings are the best candidates there.
1. Duplicate-aware 5-fold CV (StratifiedGroupKFold, shuffle, random_state=0,
   groups from ``find_duplicates``, so copies never straddle train and test;
   the ungrouped StratifiedKFold figure of (1) is printed beside, labelled,
   to show what leaking copies inflates) accuracy and balanced
   accuracy (mean ± std) of
   (1) PretrainedFeatureExtractor + LogisticRegression (class_weight="balanced"),
   (2) FineTuneClassifier head only (on cached embeddings: ``augment=None``,
   40 epochs at lr 1e-2), (3) last 2 layer groups, (4) all layers (both:
   ``--freeze-epochs`` head epochs, then ``--epochs`` at ``--lr``, default
   augmentation). All use class_weight="balanced".
   Target: the best fine-tuned setting beats (1) by >= 3 points of balanced
   accuracy.
2. Training speed against what the hardware gives: FineTuneClassifier's
   training images/s over whole epochs from files (all layers, default
   augmentation) divided by the rate of bare training steps of the same
   network on a pre-decoded batch with the best settings we know, in float32
   and (where the CPU has it) bfloat16; target >= 0.75. Beside it, seconds
   per epoch of skorch's NeuralNetClassifier (``pip install skorch``) and of
   a hand-written tutorial loop on the same network and images; target:
   skorch >= 3x slower.
3. ``--part precision``: held-out accuracy of the same all-layer fine-tuning in
   float32 and in bfloat16 (autocast, float32 master weights) on one
   duplicate-aware split.

Run: ``python benchmarks/finetune.py`` (``--quick`` for a smoke run;
``--part accuracy``, ``--part speed``, ``--part select`` or ``--part precision``
for one part).
On a 2-core CPU the accuracy part takes about an hour at 224 px.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import DEFAULT_DATA, duplicate_groups, grouped_folds, load_busi, machine, stratified_subset


def cross_validate(make, X, y, folds: int, groups: np.ndarray | None) -> dict[str, np.ndarray]:
    """Scores over duplicate-aware folds (``groups``), or plain stratified ones (``None``)."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.model_selection import cross_validate as sk_cross_validate

    cv = grouped_folds(folds) if groups is not None else StratifiedKFold(folds, shuffle=True, random_state=0)
    scores = sk_cross_validate(make(), X, y, cv=cv, groups=groups, scoring=["accuracy", "balanced_accuracy"])
    return {m: scores[f"test_{m}"] for m in ("accuracy", "balanced_accuracy")} | {"seconds": scores["fit_time"].sum()}


def inner_split(X, y, groups):
    """Fold 0's training set of the benchmark's grouped 5-fold split, split
    80/20 again by group (copies stay together there too)."""
    from sklearn.model_selection import StratifiedGroupKFold

    train, _ = next(grouped_folds(5).split(X, y, groups))
    inner_train, inner_valid = next(
        StratifiedGroupKFold(5, shuffle=True, random_state=1).split(X[train], y[train], groups[train])
    )
    return X[train][inner_train], X[train][inner_valid], y[train][inner_train], y[train][inner_valid]


class TutorialImages(torch.utils.data.Dataset):
    """Images as a tutorial (and skorch's docs) load them: PIL open, torchvision's
    random resized crop, flip and colour jitter, the weights' transform."""

    def __init__(self, X, y, preprocessing):
        from torchvision.transforms import v2

        self.X, self.preprocessing = list(X), preprocessing
        self.labels = {c: i for i, c in enumerate(sorted(set(y)))}
        self.targets = [self.labels[label] for label in y]
        self.augment = v2.Compose(
            [
                v2.RandomResizedCrop(preprocessing.resize_size, scale=(0.5, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.1),
            ]
        )
        self.transform = preprocessing.transform()

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(self.augment(Image.open(self.X[i]).convert("RGB"))), self.targets[i]


def tutorial_model(n_classes: int) -> torch.nn.Module:
    from skorchlite.backbones import get_backbone

    backbone = get_backbone("efficientnet_lite0", copy_model=True)
    model = torch.nn.Sequential(backbone.model, torch.nn.Linear(backbone.embedding_dim, n_classes))
    return model.requires_grad_(True).train()


def hand_written_epoch(X, y, image_size: int, batch_size: int) -> float:
    """One epoch as a tutorial writes it: Dataset + DataLoader, all layers trained."""
    from skorchlite.backbones import get_backbone

    images = TutorialImages(X, y, get_backbone("efficientnet_lite0").preprocessing.resized(image_size))
    model = tutorial_model(len(images.labels))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, shuffle=True)
    start = time.perf_counter()
    for batch, target in loader:
        loss = torch.nn.functional.cross_entropy(model(batch), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def skorch_epochs(X, y, image_size: int, batch_size: int, epochs: int) -> list[float]:
    """Seconds of each epoch of skorch's NeuralNetClassifier on the same network and images."""
    from skorch import NeuralNetClassifier

    from skorchlite.backbones import get_backbone

    images = TutorialImages(X, y, get_backbone("efficientnet_lite0").preprocessing.resized(image_size))
    net = NeuralNetClassifier(
        tutorial_model(len(images.labels)),
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.AdamW,
        lr=5e-4,
        batch_size=batch_size,
        max_epochs=epochs,
        train_split=None,
        iterator_train__shuffle=True,
        device="cpu",
        verbose=0,
        classes=list(range(len(images.labels))),
    )
    net.fit(images, y=None)
    return [float(row["dur"]) for row in net.history]


def bare_step_rate(
    X,
    image_size: int,
    batch_size: int,
    precision: str,
    batchnorm: str,
    steps: int = 8,
    *,
    folded: bool = False,
    compiled: bool = False,
) -> float:
    """Images/s of bare training steps on one pre-decoded batch, with the best
    settings we know: channels-last, freed memory kept, AdamW, every layer
    trained; BatchNorm in ``batchnorm`` mode, folded into the convolutions
    when ``folded``; through ``torch.compile`` when ``compiled`` (its
    compile time printed)."""
    from skorchlite.backbones import get_backbone
    from skorchlite.engine import autocast, crop_pixels, to_input
    from skorchlite.finetune.steps import fold_frozen_batchnorm, set_trainable
    from skorchlite.images import load_rgb
    from skorchlite.memory import freed_memory_kept

    backbone = get_backbone("efficientnet_lite0", copy_model=True)
    preprocessing = backbone.preprocessing.resized(image_size)
    pixels = [crop_pixels(load_rgb(Path(p), i), preprocessing) for i, p in enumerate(X[:batch_size])]
    cpu = torch.device("cpu")
    batch = to_input(pixels, preprocessing, cpu)
    target = torch.arange(batch_size) % 3
    model = torch.nn.Sequential(backbone.model, torch.nn.Linear(backbone.embedding_dim, 3))
    model = model.to(memory_format=torch.channels_last).train()
    for module in set_trainable(model[0], backbone.layer_groups, len(backbone.layer_groups), batchnorm=batchnorm):
        module.eval()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    if compiled:  # a cold compile, as on a new machine: not from torch's on-disk cache of earlier runs
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    forward = fold_frozen_batchnorm(model) if folded else model
    forward = torch.compile(forward) if compiled else forward

    def step() -> None:
        with autocast(cpu, precision):
            loss = torch.nn.functional.cross_entropy(forward(batch), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with freed_memory_kept():
        start = time.perf_counter()
        step()
        if compiled:
            print(f"torch.compile of the training step: {time.perf_counter() - start:.1f} s", flush=True)
        step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return steps * batch_size / (time.perf_counter() - start)


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

    X_train, X_valid, y_train, y_valid = inner_split(X, y, duplicate_groups(X, y))
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
    groups = duplicate_groups(X, y)
    grouped = int(sum(np.bincount(groups)[groups] > 1))
    print(
        f"fine-tuning at {args.image_size} px, {args.freeze_epochs} head epochs + {args.epochs} epochs, "
        f"batch {args.batch_size}, lr {args.lr:g}, class_weight='balanced'; "
        f"{args.folds}-fold StratifiedGroupKFold(shuffle, random_state=0) on find_duplicates groups "
        f"({grouped} of {len(y)} images in groups of copies)"
    )
    results = {}
    print(f"\n{'setting':48} {'accuracy':>15} {'balanced acc.':>15} {'fit s':>7}")
    ungrouped = cross_validate(table[next(iter(table))], X, y, args.folds, None)
    print(
        f"{'(1), ungrouped StratifiedKFold (leaks copies)':48} {ungrouped['accuracy'].mean():.3f} ± "
        f"{ungrouped['accuracy'].std():.3f}   {ungrouped['balanced_accuracy'].mean():.3f} ± "
        f"{ungrouped['balanced_accuracy'].std():.3f} {ungrouped['seconds']:7.0f}",
        flush=True,
    )
    for name, make in table.items():
        r = results[name] = cross_validate(make, X, y, args.folds, groups)
        print(
            f"{name:48} {r['accuracy'].mean():.3f} ± {r['accuracy'].std():.3f}   "
            f"{r['balanced_accuracy'].mean():.3f} ± {r['balanced_accuracy'].std():.3f} {r['seconds']:7.0f}",
            flush=True,
        )
    baseline = results[next(iter(table))]["balanced_accuracy"].mean()
    best_name = max(list(table)[1:], key=lambda n: results[n]["balanced_accuracy"].mean())
    gain = results[best_name]["balanced_accuracy"].mean() - baseline
    print(
        f"\nbest fine-tuned: {best_name}: {100 * gain:+.1f} points of balanced accuracy over (1) "
        f"(target >= +3.0): {'PASS' if gain >= 0.03 else 'FAIL'}"
    )


def speed_table(X, y, args) -> None:
    """Part 2: training speed against the bare training step, skorch and a tutorial loop."""
    from skorchlite import FineTuneClassifier
    from skorchlite.engine import native_bfloat16

    Xs, ys = stratified_subset(X, y, 320)  # not the first 320: BUSI's files are sorted by class
    Xs, ys, n = list(Xs), list(ys), len(ys)
    epochs = args.speed_epochs
    print(
        f"\ntraining speed: {n} images, all layers, default augmentation, {args.image_size} px, "
        f"batch {args.batch_size}, {epochs} epochs from files (the first decodes them)"
    )
    precisions = ["float32", "bfloat16"] if native_bfloat16(torch.device("cpu")) else ["float32"]
    ours: dict[str, list[float]] = {}
    bare_rates = {
        (precision, batchnorm): bare_step_rate(Xs, args.image_size, args.batch_size, precision, batchnorm)
        for precision in precisions
        for batchnorm in ("eval", "train")
    }
    for precision in precisions:
        bare_rates[precision, "eval", "folded"] = bare_step_rate(
            Xs, args.image_size, args.batch_size, precision, "eval", folded=True
        )
    bare_rates["float32", "eval", "folded", "compiled"] = bare_step_rate(
        Xs, args.image_size, args.batch_size, "float32", "eval", folded=True, compiled=True
    )
    best = max(bare_rates, key=bare_rates.get)
    bare = bare_rates[best]
    print(
        "bare training step on a pre-decoded batch (precision, BatchNorm mode): "
        + ", ".join(f"{' '.join(k)} {v:.1f} img/s" for k, v in bare_rates.items())
        + f"; ceiling: {' '.join(best)}"
    )
    print(f"\n{'':40} {'ours img/s':>10} {'epochs s':>22} {'utilisation':>11}")
    for precision in precisions:
        clf = FineTuneClassifier(
            unfreeze="all",
            epochs=epochs,
            freeze_epochs=0,
            image_size=args.image_size,
            batch_size=args.batch_size,
            validation_fraction=0,
            random_state=0,
            precision=precision,
        ).fit(Xs, ys)
        seconds = ours[precision] = [record["seconds"] for record in clf.history_]
        rate = n * len(seconds) / sum(seconds)
        print(
            f"FineTuneClassifier, {precision:21} {rate:10.1f} "
            f"{', '.join(f'{s:.1f}' for s in seconds):>22} {rate / bare:11.2f}  (target >= 0.75: "
            f"{'PASS' if rate / bare >= 0.75 else 'FAIL'})",
            flush=True,
        )
    skorch = skorch_epochs(Xs, ys, args.image_size, args.batch_size, epochs)
    hand = hand_written_epoch(Xs, ys, args.image_size, args.batch_size)
    mean_ours = float(np.mean(ours["float32"]))
    print(
        f"\nseconds per epoch (float32): skorchlite {mean_ours:.1f}, skorch NeuralNetClassifier "
        f"{np.mean(skorch):.1f} (epochs {', '.join(f'{s:.1f}' for s in skorch)}), hand-written loop {hand:.1f}"
    )
    ratio = float(np.mean(skorch)) / mean_ours
    print(
        f"skorch / skorchlite {ratio:.2f} (target >= 3): {'PASS' if ratio >= 3 else 'FAIL'}; "
        f"hand-written / skorchlite {hand / mean_ours:.2f}"
    )


def precision_table(X, y, args) -> None:
    """Part 3: held-out accuracy of the same fine-tuning in float32 and bfloat16,
    on one duplicate-aware split (StratifiedGroupKFold fold 0 of 5, groups
    from find_duplicates), so that copies never straddle train and test."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    from skorchlite import FineTuneClassifier
    from skorchlite.engine import native_bfloat16

    if not native_bfloat16(torch.device("cpu")):
        print("\nprecision: this CPU has no native bfloat16; nothing to compare")
        return
    train, test = next(grouped_folds(5).split(X, y, duplicate_groups(X, y)))
    print(
        f"\nprecision: {len(train)} training, {len(test)} held-out images (grouped by duplicates), "
        f"all layers, {args.freeze_epochs} head + {args.epochs} epochs, lr {args.lr:g}, {args.image_size} px"
    )
    print(f"{'precision':10} {'accuracy':>9} {'balanced acc.':>14} {'fit s':>7}")
    for precision in ("float32", "bfloat16"):
        start = time.perf_counter()
        clf = FineTuneClassifier(
            unfreeze="all",
            epochs=args.epochs,
            freeze_epochs=args.freeze_epochs,
            lr=args.lr,
            image_size=args.image_size,
            batch_size=args.batch_size,
            class_weight="balanced",
            random_state=0,
            precision=precision,
        ).fit(list(X[train]), list(y[train]))
        predicted = clf.predict(list(X[test]))
        print(
            f"{precision:10} {accuracy_score(y[test], predicted):9.3f} "
            f"{balanced_accuracy_score(y[test], predicted):14.3f} {time.perf_counter() - start:7.0f}",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--freeze-epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--speed-epochs", type=int, default=3, help="epochs of each run in the speed part")
    parser.add_argument("--part", choices=("all", "accuracy", "speed", "select", "precision"), default="all")
    parser.add_argument("--quick", action="store_true", help="150 images, 2 folds, 1 epoch, 1 repeat")
    args = parser.parse_args()

    X, y = load_busi(args.data, 150 if args.quick else None)
    if args.quick:
        args.folds, args.epochs, args.freeze_epochs, args.speed_epochs = 2, 1, 1, 2
    print(f"machine: {machine()}")
    print(f"BUSI: {len(y)} images, classes {dict(zip(*np.unique(y, return_counts=True), strict=True))}")
    if args.part == "select":
        select_table(X, y, args)
    if args.part in ("all", "accuracy"):
        accuracy_table(X, y, args)
    if args.part in ("all", "speed"):
        speed_table(X, y, args)
    if args.part in ("all", "precision"):
        precision_table(X, y, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
