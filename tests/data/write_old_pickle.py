"""Writes ``finetune_0.2.0.pkl``: a fitted FineTuneClassifier pickled by the
skorchlite of commit 120d2f6 (0.2.0, before fine-tuning became the
``skorchlite.finetune`` package), with the images and the probabilities
that version predicted. Run it against that version's code::

    git archive 120d2f6 skorchlite | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python tests/data/write_old_pickle.py

A module backbone keeps the file small; ``augment=DefaultAugmentation(...)``
makes the pickle name the module that class lived in then.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from skorchlite import FineTuneClassifier
from skorchlite.augmentation import DefaultAugmentation  # its home in 0.2.0

RNG = np.random.default_rng(0)
X = np.concatenate([RNG.integers(0, 80, (4, 16, 16, 3)), RNG.integers(170, 256, (4, 16, 16, 3))]).astype(np.uint8)
Y = np.array(["dark"] * 4 + ["bright"] * 4)

if __name__ == "__main__":
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    clf = FineTuneClassifier(
        body,
        preprocessing={"size": 16},
        unfreeze=1,
        epochs=1,
        augment=DefaultAugmentation(size=18),
        validation_fraction=0,
        cache=False,
        random_state=0,
    ).fit(X, Y)
    fixture = {"estimator": clf, "X": X, "proba": clf.predict_proba(X), "transform": clf.transform(X)}
    (Path(__file__).parent / "finetune_0.2.0.pkl").write_bytes(pickle.dumps(fixture))
