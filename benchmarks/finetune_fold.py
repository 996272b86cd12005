"""Issue 26 probes: fine-tuning recipes against frozen features on one grouped BUSI fold.

One outer fold of the benchmarks' duplicate-aware folds
(``StratifiedGroupKFold(5, shuffle=True, random_state=0)`` on
``find_duplicates`` groups; about 620 training and 156 test images), one
recipe per run, printing its balanced accuracy on the test part and the
seconds its fit took. A quick way to try a fine-tuning lever before the
5-fold table of ``benchmarks/quality.py``; one fold of 156 images is noisy
(a standard error of about 0.04), so a lever earns the full table, not a
verdict.

Recipes: ``default`` (``FineTuneClassifier()``), ``balanced`` (with
``class_weight="balanced"``), ``blocks`` (frozen ``"blocks"`` features, a
head per layer voting), ``probe`` (logistic regression on frozen
penultimate features), and ``lpft:UNFREEZE:LR:EPOCHS`` (LP-FT, Kumar et al.
2022: the head starts as that probe, then ``UNFREEZE`` groups train at
``LR`` for ``EPOCHS`` epochs with balanced class weights; the probe is put
in place by wrapping ``skorchlite.finetune.run.build_network``, until the
estimator can start its head from a probe itself).

Run: ``python benchmarks/finetune_fold.py FOLD RECIPE [RECIPE ...]``, e.g.
``python benchmarks/finetune_fold.py 0 default blocks lpft:2:3e-4:6``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _common import busi_arguments, duplicate_groups, grouped_folds, load_busi, machine
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline

from skorchlite import FineTuneClassifier, LayerVotingClassifier, PretrainedFeatureExtractor
from skorchlite.finetune import run
from skorchlite.voting import default_layer_head

PROBE_C = 0.1


def probe(X: np.ndarray, y: np.ndarray) -> LogisticRegression:
    features = PretrainedFeatureExtractor().fit_transform(X)
    return LogisticRegression(C=PROBE_C, max_iter=3000, class_weight="balanced").fit(features, y)


def start_heads_from(fitted: LogisticRegression) -> None:
    """Every network the fine-tuner builds from now on starts its head as ``fitted``."""
    build = run.build_network

    def with_probe(backbone, n_classes):
        network = build(backbone, n_classes)
        with torch.no_grad():
            network[1].weight.copy_(torch.as_tensor(fitted.coef_, dtype=torch.float32))
            network[1].bias.copy_(torch.as_tensor(fitted.intercept_, dtype=torch.float32))
        return network

    run.build_network = with_probe


def recipe(name: str, X: np.ndarray, y: np.ndarray):
    if name == "default":
        return FineTuneClassifier(random_state=0)
    if name == "balanced":
        return FineTuneClassifier(random_state=0, class_weight="balanced")
    if name == "blocks":
        widths = PretrainedFeatureExtractor(layer="blocks").fit().layer_widths_
        voting = LayerVotingClassifier(widths, estimator=default_layer_head())
        return make_pipeline(PretrainedFeatureExtractor(layer="blocks"), voting)
    if name == "probe":
        return make_pipeline(
            PretrainedFeatureExtractor(), LogisticRegression(C=PROBE_C, max_iter=3000, class_weight="balanced")
        )
    kind, unfreeze, lr, epochs = name.split(":")
    if kind != "lpft":
        raise SystemExit(f"unknown recipe {name!r}")
    start_heads_from(probe(X, y))
    return FineTuneClassifier(
        unfreeze=unfreeze if unfreeze == "all" else int(unfreeze),
        lr=float(lr),
        epochs=int(epochs),
        freeze_epochs=0,
        class_weight="balanced",
        random_state=0,
    )


def main() -> None:
    parser = busi_arguments(__doc__, quick=300)
    parser.add_argument("fold", type=int, choices=range(5))
    parser.add_argument("recipes", nargs="+")
    args = parser.parse_args()
    print(machine())
    X, y = load_busi(args.data, args.limit)
    train, test = list(grouped_folds().split(X, y, duplicate_groups(X, y)))[args.fold]
    for name in args.recipes:
        model = recipe(name, X[train], y[train])
        start = time.perf_counter()
        model.fit(X[train], y[train])
        seconds = time.perf_counter() - start
        score = balanced_accuracy_score(y[test], model.predict(X[test]))
        print(f"fold {args.fold}  {name:24} balanced accuracy {score:.3f}  fit {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
