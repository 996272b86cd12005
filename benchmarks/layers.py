"""Which layers of EfficientNet-Lite0 to embed for BUSI: penultimate, mid-level, several.

Frozen ``PretrainedFeatureExtractor(layer=...)`` features with
StandardScaler + LogisticRegression(C=0.1, class_weight="balanced",
max_iter=3000), for four feature sets: the penultimate features (the
default), the ``"mid"`` shortcut (``_blocks.10.add``), the ``"stages"``
shortcut (the last three stage outputs and the penultimate features) and
the list ``[mid node, None]``.

Scored by 5-fold ``StratifiedGroupKFold(shuffle=True, random_state=0)`` on
the groups of ``skorchlite.duplicates.find_duplicates(X, y)``, so that no
copy of a test image is trained on; beside it, labelled, the same with
ungrouped ``StratifiedKFold``, which BUSI's near-duplicates make
optimistic. Prints balanced accuracy and accuracy (mean ± std over folds).

Embeddings go to a cache folder (``--cache``, default under /tmp), so each
image goes through the network once per feature set, and a second run
reads them back.

Run: ``python benchmarks/layers.py [--limit N | --quick] [--cache DIR]``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from _common import busi_arguments, load_busi, machine
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skorchlite import PretrainedFeatureExtractor
from skorchlite.backbones import get_backbone
from skorchlite.duplicates import find_duplicates

BACKBONE = "efficientnet_lite0"
FOLDS = 5
COLUMNS = [("grouped bal. acc.", 18), ("grouped acc.", 14), ("UNGROUPED bal. acc.", 20), ("UNGROUPED acc.", 15)]
HEAD = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced", max_iter=3000))


def feature_sets() -> dict[str, object]:
    mid = get_backbone(BACKBONE).layer_shortcuts()["mid"][0]
    return {"penultimate (None)": None, f'"mid" ({mid})': "mid", '"stages"': "stages", f"[{mid!r}, None]": [mid, None]}


def scores(features: np.ndarray, y: np.ndarray, splits: list) -> tuple[np.ndarray, np.ndarray]:
    """Balanced accuracy and accuracy per fold (the extractor learns nothing,
    so embedding once outside the folds is exact)."""
    balanced, accuracy = [], []
    for train, test in splits:
        predicted = clone(HEAD).fit(features[train], y[train]).predict(features[test])
        balanced.append(balanced_accuracy_score(y[test], predicted))
        accuracy.append(accuracy_score(y[test], predicted))
    return np.array(balanced), np.array(accuracy)


def main() -> None:
    parser = busi_arguments(__doc__, quick=200)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "skorchlite-bench-layers",
        help="embedding cache folder (default: %(default)s)",
    )
    args = parser.parse_args()
    X, y = load_busi(args.data, args.limit)
    print(machine())
    duplicates = find_duplicates(X, y)
    print(f"BUSI: {len(y)} images; {duplicates.summary()}")
    zeros = np.zeros((len(y), 1))
    grouped = list(StratifiedGroupKFold(FOLDS, shuffle=True, random_state=0).split(zeros, y, duplicates.groups))
    ungrouped = list(StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(zeros, y))
    print(f"{BACKBONE} + StandardScaler + LogisticRegression(C=0.1, balanced), {FOLDS}-fold; cache {args.cache}")
    print(f"{'features':34} {'dim':>5} " + " ".join(f"{title:>{width}}" for title, width in COLUMNS) + f" {'s':>6}")
    for label, layer in feature_sets().items():
        start = time.perf_counter()
        features = PretrainedFeatureExtractor(BACKBONE, layer=layer, cache=str(args.cache)).fit_transform(X)
        seconds = time.perf_counter() - start
        folds = [fold for splits in (grouped, ungrouped) for fold in scores(features, y, splits)]
        cells = [f"{fold.mean():.3f} ± {fold.std():.3f}" for fold in folds]
        row = " ".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, COLUMNS, strict=True))
        print(f"{label:34} {features.shape[1]:>5} {row} {seconds:6.1f}")
    print("grouped: StratifiedGroupKFold on find_duplicates groups (no copy of a test image is trained on);")
    print("UNGROUPED: StratifiedKFold, shown only to make the inflation from near-duplicates visible.")


if __name__ == "__main__":
    main()
