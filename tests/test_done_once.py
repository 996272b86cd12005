"""Jobs done in one place (issue 25, point 5): one label check for the
fine-tuner, the report and the data set helpers; one message for settings
changed since fit; one inference path of a fine-tuned network, with one
mirror test-time augmentation."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import skorchlite
from skorchlite import FineTuneClassifier, LayerVotingClassifier, PretrainedFeatureExtractor
from skorchlite.datasets import summarize, train_val_test_split
from skorchlite.labels import check_labels
from skorchlite.report import rank_misclassified

PACKAGE = Path(skorchlite.__file__).parent
RNG = np.random.default_rng(0)
X = np.concatenate([RNG.integers(0, 80, (4, 16, 16, 3)), RNG.integers(170, 256, (4, 16, 16, 3))]).astype(np.uint8)
Y = np.array(["dark"] * 4 + ["bright"] * 4)

# Every public entry point that takes labels, as it takes them.
TAKERS = {
    "labels": lambda y: check_labels(y, "y"),
    "summarize": summarize,
    "train_val_test_split": lambda y: train_val_test_split(np.arange(len(y)), y, stratify=False),
    "rank_misclassified": lambda y: rank_misclassified(y, y),
}

LABEL = st.one_of(st.text(max_size=3), st.integers(-3, 3), st.floats(-1, 1), st.none())


def _outcome(take, y):
    try:
        take(y)
    except (TypeError, ValueError) as err:
        return type(err), re.sub(r"^\w+", "NAME", str(err))  # each taker names its own argument
    return None


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(LABEL, min_size=1, max_size=12))
def test_every_taker_of_labels_refuses_the_same_bad_labels(labels):
    """A mix of strings and numbers, or a missing label, was silently read by
    the report (``np.asarray(["a", 1])`` makes 1 into "1") and the data set
    helpers; the fine-tuner refused it."""
    expected = _outcome(TAKERS["labels"], labels)
    bad = any(label is None for label in labels) or len({isinstance(label, str) for label in labels}) > 1
    assert (expected is not None) == bad
    for name, take in TAKERS.items():
        if name == "train_val_test_split" and expected is None:
            continue  # its own rules on sizes: not a label check
        assert _outcome(take, labels) == expected, name


@pytest.mark.parametrize("name", sorted(TAKERS))
def test_labels_that_are_not_one_per_sample_are_refused_alike(name):
    with pytest.raises(ValueError, match=r"must be one-dimensional, one label per sample; got shape \(2, 2\)"):
        TAKERS[name](np.array([["a", "b"], ["a", "b"]]))


@pytest.fixture(scope="module")
def tuned():
    """A small network whose preprocessing leaves a 16-pixel image as it is,
    so that the mirror of the input is the input of the mirror image."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    clf = FineTuneClassifier(
        body,
        preprocessing={"size": 16},
        unfreeze=1,
        epochs=1,
        validation_fraction=0,
        cache=False,
        random_state=0,
        head="linear",  # the network's own head: the voting heads' path is tests/test_finetune_voting_head.py's
    )
    return clf.fit(X, Y)


def test_settings_changed_since_fit_are_refused_in_one_format(tuned, tmp_path):
    extractor = PretrainedFeatureExtractor(image_size=64, cache=False).fit()
    voting = LayerVotingClassifier(blocks=[2, 2]).fit(np.eye(4)[[0, 1, 2, 3] * 2], [0, 1] * 4)
    refusals = []
    for estimator, change, call in [
        (extractor, {"image_size": 96}, lambda est: est.transform(X)),
        (tuned, {"backbone": "efficientnet_lite0", "preprocessing": None}, lambda est: est.predict(X)),
        (voting, {"blocks": [1, 3]}, lambda est: est.predict(np.eye(4))),
    ]:
        fitted = estimator.get_params(deep=False)
        estimator.set_params(**change)
        with pytest.raises(ValueError) as info:
            call(estimator)
        estimator.set_params(**fitted)
        refusals.append(str(info.value))
    for message in refusals:
        assert " changed since fit (" in message and " -> " in message and "); " in message, message


def test_the_fine_tuned_network_has_one_inference_path(tuned):
    """predict_proba's probabilities and transform's features go through the
    same inputs; with tta the probabilities average the image's and its
    mirror image's, as the network computes them by hand."""
    head = tuned.model_[1]
    features = tuned.transform(X)
    with torch.inference_mode():
        proba = head(torch.from_numpy(features)).softmax(1).numpy()
    np.testing.assert_allclose(tuned.predict_proba(X), proba, rtol=1e-5, atol=1e-6)
    mirrored = tuned.transform(X[:, :, ::-1])
    with torch.inference_mode():
        tta = (head(torch.from_numpy(features)).softmax(1) + head(torch.from_numpy(mirrored)).softmax(1)) / 2
    tuned.set_params(tta=True)
    try:
        np.testing.assert_allclose(tuned.predict_proba(X), tta.numpy(), rtol=1e-5, atol=1e-6)
    finally:
        tuned.set_params(tta=False)


def test_mirror_test_time_augmentation_is_written_once():
    flips = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(".flip") and ast.unparse(node)[-3:] == "(3)"
    ]
    assert len(flips) == 1 and flips[0].startswith("engine.py:"), flips
