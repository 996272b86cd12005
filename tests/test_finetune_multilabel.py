"""Multi-label targets: FineTuneClassifier on a 0/1 indicator y (sigmoid and
binary cross-entropy per label), the extractor with scikit-learn's
multi-label heads, and the tools that take one class per image refusing it.
Also FineTuneClassifier's column names and set_output."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_files import payload_of, write_torch_payload
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from torch import nn

from skorchlite import FineTuneClassifier, PretrainedFeatureExtractor
from skorchlite.cli import main
from skorchlite.finetune.steps import weighted_loss
from skorchlite.finetune.targets import loss_weights, validation_split
from skorchlite.inspect.explainable import resolve_model
from skorchlite.strategies import Strategy, compare_strategies

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TINY = {"size": 16, "resize_size": 16, "mean": (0.5,) * 3, "std": (0.25,) * 3}


class Tiny(nn.Module):
    """A linear body: pooled, its features are linear in the channel means,
    so a linear head can read each channel's brightness."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x)


def channel_labels(n, seed=0):
    """Images whose label j is present when colour channel j is bright."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (n, 3))
    y[:3] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]  # every label present and absent
    y[3:6] = [[0, 1, 1], [1, 0, 1], [1, 1, 0]]
    low = rng.integers(0, 80, (n, 16, 16, 3))
    high = rng.integers(170, 256, (n, 16, 16, 3))
    return np.where(y[:, None, None, :] == 1, high, low).astype(np.uint8), y


X, Y = channel_labels(32)


def tiny(**params):
    """Head-only on the tiny body: trains on its embeddings, in about a second."""
    defaults = dict(
        backbone=Tiny(),
        weights=None,
        preprocessing=TINY,
        unfreeze=0,
        augment=None,
        epochs=25,
        lr=5e-2,
        batch_size=8,
        validation_fraction=0,
        random_state=0,
        cache=False,
    )
    return FineTuneClassifier(**{**defaults, **params})


@pytest.fixture(scope="module")
def fitted():
    return tiny().fit(X, Y)


# ------------------------------------------------------------- the estimator
def test_fit_predict_proba_predict_score(fitted):
    # scikit-learn's multi-label output checks, on images.
    assert fitted.multilabel_ and fitted.classes_.tolist() == [0, 1, 2]
    proba = fitted.predict_proba(X)
    assert isinstance(proba, np.ndarray) and proba.shape == (32, 3) and proba.dtype.kind == "f"
    assert ((proba > 0) & (proba < 1)).all()
    assert not np.allclose(proba.sum(1), 1)  # a probability per label, not one distribution
    predicted = fitted.predict(X)
    assert isinstance(predicted, np.ndarray) and predicted.shape == Y.shape and predicted.dtype == Y.dtype
    np.testing.assert_array_equal(predicted, (proba > 0.5).astype(int))
    np.testing.assert_array_equal(predicted, Y)  # it learned which channel is which label
    assert fitted.score(X, Y) == accuracy_score(Y, predicted) == 1.0
    wrong = Y.copy()
    wrong[0, 0] = 1 - wrong[0, 0]
    assert fitted.score(X, wrong) == pytest.approx(31 / 32)  # subset accuracy: one wrong label, one wrong row


def test_tags_say_multi_label_not_multi_output():
    tags = FineTuneClassifier().__sklearn_tags__()
    assert tags.classifier_tags.multi_label and tags.classifier_tags.multi_class
    assert not tags.target_tags.multi_output  # several multi-class targets stay unsupported


def test_every_representation_of_y_fits_alike(fitted):
    # scikit-learn's check_classifiers_multilabel_representation_invariance, on
    # images, with the pandas, sparse and boolean forms besides.
    expected = fitted.predict(X)
    for y in (
        Y.tolist(),
        list(Y),
        pd.DataFrame(Y, columns=["a", "b", "c"]),
        scipy.sparse.csr_matrix(Y),
        Y.astype(bool),
        Y.astype(float),
    ):
        predicted = tiny().fit(X, y).predict(X)
        assert type(predicted) is np.ndarray and predicted.dtype == expected.dtype
        np.testing.assert_array_equal(predicted, expected)


def test_a_column_is_one_label_per_sample_as_in_sklearn():
    clf = tiny(epochs=1)
    with pytest.warns(Warning, match="column-vector y"):
        clf.fit(X, Y[:, :1])
    assert not clf.multilabel_ and clf.predict(X).shape == (32,)


BAD_VALUES = [2, -1, 0.5, float("nan"), "1", None]


@FAST
@given(
    data=st.data(),
    shape=st.tuples(st.integers(2, 6), st.integers(2, 4)),
    bad=st.sampled_from(BAD_VALUES),
)
def test_a_bad_entry_of_y_is_named_before_training(data, shape, bad):
    y = np.random.default_rng(0).integers(0, 2, shape).astype(object)
    i, j = data.draw(st.integers(0, shape[0] - 1)), data.draw(st.integers(0, shape[1] - 1))
    y[i, j] = bad
    images = np.zeros((shape[0], 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=rf"^y\[{i}, {j}\] is .*0/1 indicator matrix") as info:
        tiny().fit(images, y.tolist())
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("y", "message"),
    [
        ([["cat", "dog"], ["dog"]], "rows of different lengths"),
        (np.zeros((4, 2, 2)), r"shape \(4, 2, 2\)"),
        (np.zeros((4, 0)), "no label column"),
        (np.array([["cat", "dog"], ["dog", "cat"], ["cat", "cat"], ["dog", "dog"]]), r"y\[0, 0\] is 'cat'"),
    ],
    ids=["label-lists", "3-d", "no-column", "multi-output"],
)
def test_other_malformed_targets_are_one_clear_line(y, message):
    with pytest.raises(ValueError, match=message) as info:
        tiny().fit(np.zeros((len(y), 8, 8, 3), np.uint8), y)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------- loss and weights
@FAST
@given(
    target=st.integers(0, 2**20).map(lambda seed: np.random.default_rng(seed).integers(0, 2, (8, 3))),
    sample_weight=st.lists(st.floats(0.25, 4), min_size=8, max_size=8),
)
def test_balanced_is_a_pos_weight_per_label_times_the_sample_weight(target, sample_weight):
    present = target.sum(0)
    target[0, present == 0] = 1  # "balanced" needs each label present and absent
    target[1, present == 8] = 0
    weight, _ = loss_weights(np.array(sample_weight), target, np.arange(3), "balanced", np.arange(8), np.arange(0))
    assert weight.shape == (8, 3)
    np.testing.assert_allclose(weight.mean(), 1, rtol=1e-5)  # mean 1 over the training entries
    n_present = target.sum(0)
    per_label = np.where(target == 1, 8 / (2 * n_present), 8 / (2 * (8 - n_present)))
    np.testing.assert_allclose(
        weight / weight[0, 0],
        (np.array(sample_weight)[:, None] * per_label) / (sample_weight[0] * per_label[0, 0]),
        rtol=1e-5,
    )
    # The ratio of a label's present to absent weight is BCEWithLogitsLoss's pos_weight.
    pos_weight = (8 - n_present) / n_present
    np.testing.assert_allclose(per_label.max(0) / per_label.min(0), np.maximum(pos_weight, 1 / pos_weight))


def test_the_loss_is_binary_cross_entropy_of_the_sigmoid_per_label():
    logits, target = torch.randn(5, 3), torch.randint(0, 2, (5, 3)).float()
    weight = torch.rand(5, 3)
    expected = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="none").mean(1).sum()
    torch.testing.assert_close(weighted_loss(logits, target, weight, 0.0), expected)
    # pos_weight, as PyTorch spells a balanced label's weights.
    pos_weight = torch.tensor([3.0, 1.0, 0.5])
    ours = weighted_loss(logits, target, torch.where(target == 1, pos_weight, 1.0), 0.0) / 5  # rows
    torch.testing.assert_close(ours, nn.BCEWithLogitsLoss(pos_weight=pos_weight)(logits, target))
    smoothed = weighted_loss(logits, target, torch.ones(5, 3), 0.2)
    expected = F.binary_cross_entropy_with_logits(logits, target * 0.8 + 0.1, reduction="none").mean(1).sum()
    torch.testing.assert_close(smoothed, expected)


def test_balanced_equals_its_list_of_dicts_and_changes_training():
    n_present = Y.sum(0)
    as_list = [{0: 32 / (2 * (32 - k)), 1: 32 / (2 * k)} for k in n_present.tolist()]
    balanced = tiny(epochs=3, class_weight="balanced").fit(X, Y).predict_proba(X)
    np.testing.assert_array_equal(tiny(epochs=3, class_weight=as_list).fit(X, Y).predict_proba(X), balanced)
    assert not np.allclose(tiny(epochs=3).fit(X, Y).predict_proba(X), balanced)


@pytest.mark.parametrize(
    ("column", "message"), [(np.zeros(32), "never present"), (np.ones(32), "always present")], ids=["never", "always"]
)
def test_balanced_names_a_label_column_it_cannot_balance(column, message):
    y = np.column_stack([Y, column]).astype(int)
    with pytest.raises(ValueError, match=f"label column 3 of y is {message} in the 32 training rows"):
        tiny(class_weight="balanced").fit(X, y)
    assert tiny(epochs=1).fit(X, y).predict(X).shape == (32, 4)  # without balancing, nothing to divide by


@pytest.mark.parametrize(
    ("class_weight", "y", "message"),
    [
        ({0: 1.0, 1: 2.0}, Y, "a dict {class: weight}, which is for one label per sample"),
        ([{0: 1, 1: 2}] * 2, Y, "lists 2 dicts, but y has 3 label columns"),
        ([{0: 1, 1: 2}, {0: 1, 1: -1}, {}], Y, "label 1's value 1 gets -1"),
        ([{0: 1, 1: 2}, "balanced", {}], Y, r"class_weight\[1\] is 'balanced', not a dict"),
        ([{0: 1, 1: 2}, {}, {"yes": 2}], Y, r"class_weight\[2\] is \{'yes': 2\}, not a dict"),
        ([{0: 1, 1: 2}] * 3, Y[:, 0], "a list .* which is for a multi-label y"),
    ],
    ids=["dict", "length", "negative", "not-a-dict", "other-keys", "list-single-label"],
)
def test_class_weight_that_does_not_fit_the_target_is_refused(class_weight, y, message):
    with pytest.raises(ValueError, match=message):
        tiny(class_weight=class_weight).fit(X, y)


def test_sample_weight_counts_and_ones_equal_none():
    none = tiny(epochs=3).fit(X, Y).predict_proba(X)
    np.testing.assert_array_equal(tiny(epochs=3).fit(X, Y, sample_weight=np.ones(32)).predict_proba(X), none)
    weight = np.where(Y[:, 0] == 1, 5.0, 1.0)
    weighted = tiny(epochs=3).fit(X, Y, sample_weight=weight).predict_proba(X)
    assert not np.allclose(weighted, none)
    with pytest.raises(ValueError, match="The 32 training rows have zero total weight"):
        tiny(epochs=1, class_weight=[{0: 0, 1: 0}] * 3).fit(X, Y, sample_weight=weight)


# ------------------------------------------------------------- validation and early stopping
def test_validation_loss_and_accuracy_are_the_restored_weights_per_label():
    clf = tiny(epochs=4, lr=0.5, schedule=None, validation_fraction=0.25, n_iter_no_change=1).fit(X, Y)
    _, valid = validation_split(Y, 0.25, 0)
    best = min(clf.history_, key=lambda h: h["valid_loss"])
    assert clf.best_epoch_ == best["epoch"]
    proba = clf.predict_proba(X[valid]).astype(np.float64)
    target = Y[valid]
    bce = -(target * np.log(proba) + (1 - target) * np.log(1 - proba)).mean()
    assert bce == pytest.approx(best["valid_loss"], rel=1e-4)
    assert best["valid_accuracy"] == accuracy_score(target, clf.predict(X[valid]))


def test_partial_fit_and_warm_start_continue_a_multi_label_fit():
    clf = tiny(epochs=1)
    for calls in (1, 2):
        clf.partial_fit(X, Y, classes=[0, 1, 2])
        assert len(clf.history_) == calls and clf.multilabel_
    clf.set_params(warm_start=True).fit(X, Y)
    assert len(clf.history_) == 3
    with pytest.raises(ValueError, match="y is one label per sample, but the first fit's was a multi-label"):
        clf.partial_fit(X, Y[:, 0])
    with pytest.raises(ValueError, match="y has 2 label columns, but the first fit had 3"):
        clf.partial_fit(X, Y[:, :2])
    with pytest.raises(ValueError, match=r"classes=\['a', 'b', 'c'\] does not fit y"):
        tiny().partial_fit(X, Y, classes=["a", "b", "c"])
    single = tiny(epochs=1).fit(X, Y[:, 0])
    with pytest.raises(ValueError, match="y is a multi-label indicator matrix, but the first fit's was one label"):
        single.partial_fit(X, Y)
    assert len(single.history_) == 1 and not single.multilabel_  # a refused call changes nothing


@pytest.mark.parametrize("unfreeze", [0, 1], ids=["embedding-mode", "fine-tuned"])
def test_tta_averages_each_label_probability_with_the_mirror_image(unfreeze):
    clf = tiny(epochs=2, unfreeze=unfreeze).fit(X, Y)
    mirrored = clf.predict_proba(X[:, :, ::-1])
    expected = (clf.predict_proba(X) + mirrored) / 2
    tta = clf.set_params(tta=True).predict_proba(X)
    np.testing.assert_allclose(tta, expected, atol=1e-5)
    assert not np.allclose(tta, mirrored)


# ------------------------------------------------------------- sharing
def test_save_weights_keeps_a_model_multi_label(tmp_path):
    clf = FineTuneClassifier(unfreeze=0, augment=None, epochs=2, image_size=64, batch_size=8, validation_fraction=0)
    clf.fit(X, Y)
    loaded = FineTuneClassifier.load_weights(clf.save_weights(tmp_path / "m.pt"))
    assert loaded.multilabel_
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    # The command line shows one class per image: it refuses, in one line.
    assert main(["predict", str(tmp_path / "m.pt"), str(_png(tmp_path))]) == 1


def _png(folder):
    from PIL import Image

    Image.fromarray(X[0]).save(folder / "0.png")
    return folder / "0.png"


def test_a_format_2_file_loads_as_one_label_per_sample(tmp_path):
    clf = FineTuneClassifier(unfreeze=0, augment=None, epochs=1, image_size=64, validation_fraction=0)
    payload = payload_of(clf.fit(X, Y[:, 0]).save_weights(tmp_path / "m.pt"))
    del payload["fitted"]["multilabel_"]
    payload["version"] = 2
    loaded = FineTuneClassifier.load_weights(write_torch_payload(payload, tmp_path / "old.pt"))
    assert not loaded.multilabel_
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_explanations_refuse_a_multi_label_model(fitted):
    with pytest.raises(ValueError, match="multi-label"):
        resolve_model(fitted)


# ------------------------------------------------------------- the extractor with scikit-learn's heads
def _extractor():
    return PretrainedFeatureExtractor(backbone=Tiny(), weights=None, preprocessing=TINY, cache=False)


@pytest.mark.parametrize(
    "head", [MultiOutputClassifier(LogisticRegression()), OneVsRestClassifier(LogisticRegression())], ids=type
)
def test_extractor_with_a_multi_label_head(head):
    pipe = make_pipeline(_extractor(), head).fit(X, Y)
    predicted = pipe.predict(X)
    assert predicted.shape == Y.shape and pipe.score(X, Y) == 1.0
    proba = pipe.predict_proba(X)
    # MultiOutputClassifier: a (n_samples, 2) array per label; OneVsRest: one column per label.
    present = np.column_stack([p[:, 1] for p in proba]) if isinstance(proba, list) else proba
    assert present.shape == (32, 3)
    np.testing.assert_array_equal(present > 0.5, predicted == 1)


# ------------------------------------------------------------- what takes one class per image
def test_compare_strategies_refuses_a_multi_label_y_in_one_line():
    strategy = Strategy("frozen", make_pipeline(_extractor(), LogisticRegression()))
    with pytest.raises(ValueError, match=r"y has shape \(32, 3\), a multi-label indicator matrix") as info:
        compare_strategies(X, Y, [strategy], cv=2, groups=None)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------- column names and set_output
@pytest.fixture(scope="module")
def single():
    return tiny(epochs=1).fit(X, Y[:, 0])


def test_get_feature_names_out_names_the_transform_columns(single):
    with pytest.raises(NotFittedError):
        FineTuneClassifier().get_feature_names_out()
    names = single.get_feature_names_out()
    assert names.tolist() == [f"finetuneclassifier{i}" for i in range(8)]
    assert single.transform(X[:2]).shape == (2, len(names))


@pytest.mark.parametrize("y", [Y[:, 0], Y], ids=["one-label", "multi-label"])
def test_set_output_pandas_in_a_pipeline(single, y):
    # Pipeline.set_output configures every step that transforms, the final one too.
    pipe = Pipeline([("clf", tiny(epochs=1))]).set_output(transform="pandas").fit(X, y)
    assert pipe.predict(X).shape == y.shape
    frame = pipe.transform(X[:3])
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == [f"finetuneclassifier{i}" for i in range(8)]
    # As a middle step, its named columns reach the next estimator.
    stacked = make_pipeline(tiny(epochs=1), LogisticRegression()).set_output(transform="pandas").fit(X, Y[:, 0])
    assert list(stacked[-1].feature_names_in_) == list(frame.columns)
    alone = copy.deepcopy(single).set_output(transform="pandas").transform(X[:3])
    np.testing.assert_array_equal(alone.to_numpy(), single.transform(X[:3]))
