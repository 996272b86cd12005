"""Which transfer-learning strategy to use on BUSI, compared without leakage.

``skorchlite.strategies.compare_strategies`` with ``default_strategies()``
(every offline EfficientNet-Lite): frozen penultimate features per backbone,
multi-layer ``"stages"`` features, the backbones concatenated, ``"blocks"``
features with one head per layer voting (Lite0 at its own resolution, Lite0
at two resolutions, all backbones with and without mirror test-time
augmentation), and ``FineTuneClassifier()``'s defaults (all layers fine-tuned, then a head
per fine-tuned layer voting). Outer folds: 5-fold ``StratifiedGroupKFold(shuffle=True,
random_state=0)`` on ``find_duplicates`` groups. Each recipe's head C is
chosen on inner grouped folds of each outer training fold, where
fine-tuning is scored too; the "chosen on inner folds" row takes, per
outer fold, the fine-tuner unless the strategy with the best inner score
leads it significantly (below), and the "averaged" row
averages the strategies' probabilities with weights chosen on their inner
out-of-fold probabilities (ensemble selection).

Prints the ranked table (balanced accuracy ± std over the outer folds,
accuracy, seconds), then the targets of issue 14: the best frozen recipe
≥ 0.82 and the best fine-tuning recipe ≥ 0.85 grouped balanced accuracy,
the nested choice among every recipe against issue 26's 0.83 (the honest
figure for "compare, then use the winner"), the nested average against the
same, and the nested choice among the frozen recipes alone. Then, labelled, the frozen recipes under
ungrouped ``StratifiedKFold`` folds, which BUSI's near-duplicates make
optimistic.

``--finetune-search schedule`` runs only fine-tuning, its schedule length
(8 or 16 epochs after the 2 head epochs) chosen on one grouped hold-out
fifth of each outer training fold (issue 14, point 5; about 30 minutes on
2 cores). ``--finetune-search settings`` chooses, on the same hold-outs,
among the recipe as it is and four variants that each change one setting:
stronger augmentation, 288 px instead of 224, EfficientNet-Lite1 instead of
Lite0, mirror test-time augmentation (about 60 minutes).

With fine-tuning, ``FineTuneClassifier()`` is the selection's baseline:
an outer fold keeps it unless the recipe with the best inner score beats it
significantly on the inner folds (``compare_strategies(baseline=...)``);
the "best inner score taken" row takes the best however small its lead.
``--save FILE.json`` writes the grouped comparison's arrays (outer and
inner-fold scores of every setting); ``--rescore FILE.json`` prints the
table and targets of such a file under this code's selection rules,
refitting nothing (seconds).

``--classes benign malignant`` runs the same on BUSI's two-class task
(benign against malignant, 647 images), data the baseline rule was not
written on.

``--inner-cv N`` scores every recipe on N inner folds instead of
``compare_strategies``' 5 (each inner fit trains on (N - 1) / N of the outer
training fold; fine-tuning's cost grows with N: ``--inner-cv 3`` is the
comparison before 2026-12-06's last run).

Run: ``python benchmarks/quality.py [--no-finetune | --finetune-search {schedule,settings}] [--classes C [C ...]] [--inner-cv N] [--save FILE.json] [--limit N | --quick] [--cache DIR]``
or ``python benchmarks/quality.py --rescore FILE.json``
(without fine-tuning, about 20 minutes for the grouped comparison and 10 for
the ungrouped one on 2 cores with an empty cache, the first fold embedding
each image once per backbone and option; fine-tuning adds minutes per fold).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from _common import busi_arguments, busi_samples, class_arguments, duplicate_groups, machine

from skorchlite import FineTuneClassifier
from skorchlite.backbones import get_backbone
from skorchlite.finetune.augmentation import default_augmentation
from skorchlite.strategies import (
    BEST_INNER,
    ENSEMBLE,
    Strategy,
    StrategyComparison,
    compare_strategies,
    default_strategies,
)

TARGETS = {"frozen": 0.82, "fine-tuning": 0.85, "chosen": 0.83}


def finetune_search(finetuning: Strategy, search: str) -> Strategy:
    """``default_strategies``' fine-tuning with ``search``'s candidates as its
    grid, chosen on one grouped hold-out fifth of each outer training fold
    (three inner folds would triple the search's cost)."""
    if search == "schedule":
        return replace(
            finetuning, name=finetuning.name + ", epochs chosen", param_grid={"epochs": [8, 16]}, inner_folds=1
        )
    # One setting changed at a time (a grid of every combination would cost
    # 24 fine-tunings per outer fold): each dict is one candidate.
    model = finetuning.estimator
    preprocessing = get_backbone(model.backbone).preprocessing.resized(model.image_size)
    strong = replace(default_augmentation(preprocessing), scale=(0.25, 1.0), brightness=0.4, contrast=0.4)
    candidates: list[dict[str, list[Any]]] = [
        {},
        {"augment": [strong]},
        {"image_size": [288]},
        {"backbone": ["efficientnet_lite1"]},
        {"tta": [True]},
    ]
    return replace(finetuning, name=finetuning.name + ", settings chosen", param_grid=candidates, inner_folds=1)


#: StrategyComparison's fields that hold arrays of scores or seconds (NaN saved as null).
ARRAYS = (
    "balanced_accuracy",
    "accuracy",
    "seconds",
    "ensemble_weights",
    "ensemble_balanced_accuracy",
    "ensemble_inner_score",
    "ensemble_accuracy",
)


def save(result: StrategyComparison, path: Path) -> None:
    """The comparison's fields as JSON (arrays as nested lists), from which
    another selection rule can be scored without refitting anything."""

    def plain(value: Any) -> Any:
        return np.where(np.isnan(value), None, value).tolist() if isinstance(value, np.ndarray) else value

    saved = {field.name: plain(getattr(result, field.name)) for field in fields(result)}
    saved["candidate_split_scores"] = [plain(splits) for splits in result.candidate_split_scores]
    path.write_text(json.dumps(saved, default=repr, allow_nan=False, indent=1))


def load(path: Path) -> StrategyComparison:
    """A comparison :func:`save` wrote, scored by this code's selection rules."""
    saved = json.loads(path.read_text())
    for name in ARRAYS:
        saved[name] = None if saved[name] is None else np.array(saved[name], dtype=float)
    saved["candidate_split_scores"] = [np.array(splits, dtype=float) for splits in saved["candidate_split_scores"]]
    return StrategyComparison(**saved)


def verdict(value: float, target: float) -> str:
    return f"{value:.3f} (>= {target}: {'PASS' if value >= target else 'FAIL'})"


def main() -> None:
    parser = busi_arguments(__doc__, quick=240)
    part = parser.add_mutually_exclusive_group()
    part.add_argument("--no-finetune", dest="finetune", action="store_false", help="frozen recipes only")
    part.add_argument(
        "--finetune-search",
        choices=["schedule", "settings"],
        help="fine-tuning only, its epochs or other settings chosen on inner hold-outs",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "skorchlite-bench-quality",
        help="embedding cache folder (default: %(default)s)",
    )
    class_arguments(parser)
    parser.add_argument("--inner-cv", type=int, default=None, help="inner grouped folds (default: compare_strategies')")
    parser.add_argument("--save", type=Path, help="also write the grouped comparison's arrays to this JSON file")
    parser.add_argument(
        "--rescore", type=Path, help="print the table and targets of a comparison --save wrote, refitting nothing"
    )
    args = parser.parse_args()
    if args.rescore:
        result = load(args.rescore)
        tuned = {s.name for s in default_strategies(cache=False) if isinstance(s.estimator, FineTuneClassifier)}
        print(result)
        report(result, np.array([name in tuned for name in result.names]))
        return
    inner = {} if args.inner_cv is None else {"inner_cv": args.inner_cv}
    X, y = busi_samples(parser, args)
    print(machine())
    start = time.perf_counter()
    groups = duplicate_groups(X, y)
    print(
        f"BUSI: {len(y)} images of {sorted(set(y.tolist()))}; duplicate groups found in {time.perf_counter() - start:.1f} s"
    )
    strategies = default_strategies(finetune=args.finetune, cache=str(args.cache))
    if args.finetune_search:
        strategies = [finetune_search(strategies[-1], args.finetune_search)]
    # The library's recommended recipe is the baseline the selection keeps
    # unless a frozen recipe leads it significantly on the inner folds.
    tuned = np.array([isinstance(s.estimator, FineTuneClassifier) for s in strategies])
    baseline = strategies[int(tuned.argmax())].name if tuned.any() and not args.finetune_search else None
    result = compare_strategies(
        X, y, strategies, groups=groups, baseline=baseline, **inner, log=lambda line: print(line, flush=True)
    )
    print()
    print(result)
    if args.save:
        save(result, args.save)
    report(result, tuned)
    frozen = np.flatnonzero(~tuned)
    if not frozen.size:
        return
    print("\nUNGROUPED StratifiedKFold, frozen recipes only (shown to make the inflation visible):")
    ungrouped = compare_strategies(X, y, [strategies[i] for i in frozen], groups=None, **inner)
    for i in ungrouped.ranking():
        scores = ungrouped.balanced_accuracy[i]
        print(f"  {ungrouped.names[i]}: {scores.mean():.3f} ± {scores.std():.3f} balanced acc.")


def report(result: StrategyComparison, tuned: np.ndarray) -> None:
    """The targets: the nested choices and average, the best frozen and fine-tuning rows."""
    means = result.balanced_accuracy.mean(axis=1)
    frozen = np.flatnonzero(~tuned)
    baseline = result.baseline
    print()
    chosen_by = f"{baseline} kept unless led significantly" if baseline else "best inner score"
    print(
        f"recipe chosen on inner folds ({chosen_by}), per outer fold: "
        f"{verdict(result.selected_balanced_accuracy.mean(), TARGETS['chosen'])}"
    )
    if baseline:
        best_inner = replace(result, baseline=None).selected_balanced_accuracy
        p = " ".join("-" if np.isnan(value) else f"{value:.3f}" for value in result.lead_p_value())
        print(f"{BEST_INNER}: {verdict(best_inner.mean(), TARGETS['chosen'])}; the winner's lead's p per fold: {p}")
    if result.ensemble_measured:
        averaged = np.asarray(result.ensemble_balanced_accuracy).mean()
        print(f"{ENSEMBLE}, per outer fold: {verdict(averaged, TARGETS['chosen'])}")
    if frozen.size:
        best = frozen[means[frozen].argmax()]
        chosen = result.chosen(among=frozen)  # the nested choice among the frozen recipes
        nested = result.balanced_accuracy[chosen, np.arange(len(chosen))]
        print(f"best frozen recipe: {result.names[best]}: {verdict(means[best], TARGETS['frozen'])}")
        print(f"frozen recipe chosen on inner folds, per outer fold: {nested.mean():.3f} ± {nested.std():.3f}")
    if tuned.any():
        best_tuned = np.flatnonzero(tuned)[means[tuned].argmax()]
        print(
            f"best fine-tuning recipe: {result.names[best_tuned]}: {verdict(means[best_tuned], TARGETS['fine-tuning'])}"
        )
        for i in np.flatnonzero(tuned):
            if len(result.candidates[i]) < 2:
                continue
            print(f"{result.names[i]}: each setting's balanced accuracy on the inner hold-outs (mean, per fold):")
            for settings, scores in zip(result.candidates[i], result.candidate_scores[i], strict=True):
                times = sum(best == settings for best in result.best_params[i])
                per_fold = " ".join(f"{score:.3f}" for score in scores)
                print(f"  {settings or 'as it is'}: {scores.mean():.3f} ({per_fold}), chosen {times}x")


if __name__ == "__main__":
    main()
