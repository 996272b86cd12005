"""Red-team regressions of issue 13 for training: points 1 (weights mean what
scikit-learn says), 4 (no silent non-finite or half-set model), 6 (a warm
start never continues a network the parameters no longer describe) and 14
(input edge cases of scikit-learn users). Each test names its point."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.model_selection import train_test_split

import skorchlite.finetune.loop
from skorchlite import FineTuneClassifier, PretrainedFeatureExtractor
from skorchlite.backbones import resolve_weights

RNG = np.random.default_rng(13)
SMALL = dict(image_size=64, batch_size=8, validation_fraction=0, random_state=0)


def _toy(n_dark, n_bright):
    dark = RNG.integers(0, 90, size=(n_dark, 32, 32, 3), dtype=np.uint8)
    bright = RNG.integers(160, 256, size=(n_bright, 32, 32, 3), dtype=np.uint8)
    return np.concatenate([dark, bright]), np.array(["dark"] * n_dark + ["bright"] * n_bright)


X16, Y16 = _toy(8, 8)


def _head_only(**params):
    return FineTuneClassifier(**{**SMALL, "unfreeze": 0, "augment": None, "head": "linear", **params})


def _learned(clf):
    return {k: v for k, v in vars(clf).items() if k.endswith("_")}


# ------------------------------------------------------------- 1: weights
def _mean_step_gradient(monkeypatch, X, y, batch_size, class_weight=None, **fit_params):
    """Head gradient of each step, parameters held still, averaged over one epoch."""
    steps = []
    real = skorchlite.finetune.loop.make_optimizer

    def recording(*args, **kwargs):
        optimizer = real(*args, **kwargs)

        def step(self, closure=None):  # records instead of moving the weights
            steps.append(torch.cat([p.grad.flatten() for g in self.param_groups for p in g["params"]]))

        optimizer.step = types.MethodType(step, optimizer)  # bound, as torch's schedulers expect
        return optimizer

    monkeypatch.setattr(skorchlite.finetune.loop, "make_optimizer", recording)
    _head_only(batch_size=batch_size, epochs=1, schedule=None, class_weight=class_weight).fit(X, y, **fit_params)
    assert len(steps) == -(-len(X) // batch_size)
    return torch.stack(steps).mean(0)


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_13_1_a_weight_of_2_acts_as_the_sample_appearing_twice(monkeypatch, batch_size):
    """Point 1: the expected gradient of one step is that of the data with
    each weight-2 sample duplicated, at any batch size (not only when one
    batch holds all samples)."""
    X, y = X16[4:12], Y16[4:12]  # four dark, four bright
    weight = np.array([2.0] * 4 + [1.0] * 4)
    doubled = np.r_[0:4, 0:4, 4:8]
    weighted = _mean_step_gradient(monkeypatch, X, y, batch_size, sample_weight=weight)
    duplicated = _mean_step_gradient(monkeypatch, X[doubled], y[doubled], batch_size)
    torch.testing.assert_close(weighted, duplicated, rtol=1e-4, atol=1e-6)


def test_13_1_class_weight_balanced_is_the_same_gradient_at_every_batch_size(monkeypatch):
    """Point 1: "balanced" rebalances the classes at batch_size=1 as it does
    with one batch of everything (it used to do nothing at batch_size=1)."""
    X, y = _toy(6, 2)
    grads = [_mean_step_gradient(monkeypatch, X, y, bs, class_weight="balanced") for bs in (1, 4, 32)]
    for grad in grads[1:]:
        torch.testing.assert_close(grad, grads[0], rtol=1e-4, atol=1e-6)
    plain = _mean_step_gradient(monkeypatch, X, y, 32)
    assert not torch.allclose(plain, grads[0], rtol=1e-2)


@pytest.mark.parametrize("how", ["sample_weight", "class_weight"])
def test_13_1_weights_change_predictions_at_batch_size_1(how):
    """Point 1: at batch_size=1 weights used to cancel exactly (prob. change 0)."""
    X, y = _toy(12, 4)
    params = dict(batch_size=1, epochs=2, lr=1e-3, cache=False)
    plain = _head_only(**params).fit(X, y).predict_proba(X)
    if how == "sample_weight":
        weighted = _head_only(**params).fit(X, y, sample_weight=np.where(y == "bright", 10.0, 0.1))
    else:
        weighted = _head_only(class_weight="balanced", **params).fit(X, y)
    proba = weighted.predict_proba(X)
    bright = list(weighted.classes_).index("bright")  # the minority, weighted up
    assert proba[:, bright].mean() > plain[:, bright].mean() + 0.05


def test_13_1_validation_loss_is_the_weighted_mean_over_the_whole_validation_set():
    """Point 1: sum of weighted losses / sum of weights over all validation
    rows, not an average of per-batch weighted means (batches 5, 5, 2)."""
    X, y = _toy(12, 12)
    weight = np.tile([0.2, 5.0, 1.0], 8)
    clf = _head_only(epochs=1, lr=1e-2, batch_size=5, validation_fraction=0.5).fit(X, y, sample_weight=weight)
    target = np.searchsorted(clf.classes_, y)
    _, valid = train_test_split(np.arange(24), test_size=0.5, stratify=target, random_state=0)
    embeddings = torch.from_numpy(PretrainedFeatureExtractor(image_size=64).fit_transform(X[valid]))
    with torch.inference_mode():
        losses = F.cross_entropy(clf.model_[1](embeddings), torch.as_tensor(target[valid]), reduction="none")
    expected = float((losses.numpy() * weight[valid]).sum() / weight[valid].sum())
    assert clf.best_epoch_ == 1
    assert clf.history_[0]["valid_loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("rows", ["training", "validation"])
def test_13_1_zero_total_weight_is_a_clear_error_not_nan(rows):
    """Point 1: rows of zero total weight have no loss; say so before training."""
    X, y = _toy(8, 8)
    target = np.searchsorted(np.unique(y), y)
    train, valid = train_test_split(np.arange(16), test_size=0.25, stratify=target, random_state=0)
    weight = np.zeros(16)
    weight[valid if rows == "training" else train] = 1.0
    clf = _head_only(epochs=1, validation_fraction=0.25)
    with pytest.raises(ValueError, match=f"{rows} rows have zero total weight"):
        clf.fit(X, y, sample_weight=weight)
    assert not _learned(clf)
    with pytest.raises(ValueError, match="non-zero|zero total weight"):
        _head_only(epochs=1).fit(X, y, sample_weight=np.zeros(16))


# ------------------------------------------------------------- 4: non-finite
@pytest.mark.parametrize(
    "name", ["lr", "lr_decay", "weight_decay", "momentum", "warmup", "label_smoothing", "validation_fraction"]
)
@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_13_4_float_parameters_must_be_finite(name, value):
    """Point 4: inf and NaN were accepted (lr=inf ran; NaN passes every comparison)."""
    clf = _head_only(**{name: value})
    with pytest.raises(ValueError, match=rf"The '{name}' parameter of FineTuneClassifier must be a float in the range"):
        clf.fit(X16, Y16)
    assert not _learned(clf)


@pytest.mark.parametrize(
    "optimizer, lr, batch_size",
    [
        ("adamw", 1e37, 16),  # one step: the epoch ended with logits of inf, predict_proba all NaN
        ("adamw", 1e37, 8),
        ("adamw", 1e39, 8),  # AdamW raised a raw RuntimeError (float32 overflow)
        ("sgd", 1e39, 8),
        ("sgd", 1e38, 1),
    ],
)
def test_13_4_an_absurd_rate_is_a_floating_point_error_and_leaves_no_fitted_model(optimizer, lr, batch_size):
    """Point 4: a cold fit that diverges in its first epoch leaves the
    estimator unfitted (no untrained head that looks fitted)."""
    clf = _head_only(epochs=2, lr=lr, optimizer=optimizer, batch_size=batch_size, schedule=None)
    with pytest.raises(FloatingPointError, match=r"in epoch 1 at learning rate \d.*left as it was before fit"):
        clf.fit(X16, Y16)
    assert not _learned(clf)
    with pytest.raises(NotFittedError):
        clf.predict(X16)


def test_13_4_a_diverging_warm_start_keeps_the_previous_model():
    """Point 4: a warm start whose first epoch diverges leaves the fitted
    estimator exactly as it was (weights, history, best epoch)."""
    clf = _head_only(epochs=1, lr=1e-2).fit(X16, Y16)
    before = clf.predict_proba(X16)
    history, best = list(clf.history_), clf.best_epoch_
    with pytest.raises(FloatingPointError, match="epoch 2"):
        clf.set_params(warm_start=True, lr=1e37, batch_size=16, schedule=None).fit(X16, Y16)
    # Predicted in batches of the first fit's size: another batch size may
    # round the last float32 bit differently, which is not a changed model.
    np.testing.assert_array_equal(clf.set_params(batch_size=SMALL["batch_size"]).predict_proba(X16), before)
    assert clf.history_ == history and clf.best_epoch_ == best


def _gradient_blown_up_from_call(first):
    real = skorchlite.finetune.loop.weighted_loss
    calls = []

    def loss(*args, **kwargs):
        calls.append(1)
        value = real(*args, **kwargs)
        if len(calls) >= first:
            value.register_hook(lambda grad: grad * float("inf"))  # finite loss, infinite gradient
        return value

    return loss


@pytest.mark.parametrize("first_call, epoch", [(1, 1), (3, 2)])
def test_13_4_a_non_finite_gradient_is_caught_before_the_step(monkeypatch, first_call, epoch):
    """Point 4: an infinite gradient under a finite loss; in epoch 2 the
    estimator keeps epoch 1's finite weights, in epoch 1 it stays unfitted."""
    monkeypatch.setattr(skorchlite.finetune.loop, "weighted_loss", _gradient_blown_up_from_call(first_call))
    clf = _head_only(epochs=2, lr=1e-2)
    with pytest.raises(FloatingPointError, match=f"gradients became non-finite.*in epoch {epoch}"):
        clf.fit(X16, Y16)
    if epoch == 1:
        assert not _learned(clf)
    else:
        assert clf.best_epoch_ == 1 and len(clf.history_) == 1
        assert all(torch.isfinite(p).all() for p in clf.model_.parameters())


def test_13_4_a_failed_refit_is_never_half_set():
    """Point 4: a refit that fails (here on negative weights, after the new
    labels were read) leaves the previous fit whole: classes_ and model agree."""
    clf = _head_only(epochs=1, lr=1e-2).fit(X16, Y16)
    before = _learned(clf)
    proba = clf.predict_proba(X16)
    weight = -np.ones(16)
    with pytest.raises(ValueError, match="Negative"):
        clf.fit(X16, np.where(Y16 == "dark", "a", "b"), sample_weight=weight)
    assert _learned(clf).keys() == before.keys()
    np.testing.assert_array_equal(clf.classes_, ["bright", "dark"])
    np.testing.assert_array_equal(clf.predict_proba(X16), proba)


def test_13_4_ctrl_c_before_the_first_epoch_ends_leaves_no_fitted_model(monkeypatch):
    """Point 4: Ctrl-C in the first epoch of a cold fit re-raises and leaves
    nothing fitted (it used to return an untrained head that could predict)."""

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(skorchlite.finetune.loop, "weighted_loss", interrupt)
    clf = _head_only(epochs=2)
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X16, Y16)
    assert not _learned(clf)


# ------------------------------------------------------------- 6: warm start
def test_13_6_a_changed_backbone_is_refused_by_warm_start_partial_fit_and_predict():
    """Point 6: warm_start kept training Lite0 while backbone said Lite1; in
    embedding mode predict fed Lite1 embeddings to the Lite0 head."""
    clf = _head_only(epochs=1, lr=1e-2, warm_start=True).fit(X16, Y16)
    proba = clf.predict_proba(X16)
    clf.set_params(backbone="efficientnet_lite1")
    for call in (lambda: clf.fit(X16, Y16), lambda: clf.partial_fit(X16, Y16), lambda: clf.predict(X16)):
        with pytest.raises(ValueError, match="backbone .*efficientnet_lite0.*efficientnet_lite1.*warm_start=False"):
            call()
    clf.set_params(backbone="efficientnet_lite0")
    np.testing.assert_array_equal(clf.predict_proba(X16), proba)  # nothing was changed meanwhile
    clf.set_params(backbone="efficientnet_lite1", warm_start=False).fit(X16, Y16)
    lite1 = resolve_weights("efficientnet_lite1").sha256
    assert clf._network_key_ == {"backbone": "efficientnet_lite1", "weights_sha256": lite1}
    assert clf.predict_proba(X16).shape == (16, 2)


def test_13_6_changed_weights_are_refused_by_warm_start(tmp_path):
    """Point 6: other weights are another network, whatever their name."""
    clf = _head_only(epochs=1, warm_start=True).fit(X16, Y16)
    state = torch.load(resolve_weights("efficientnet_lite0").path, weights_only=True)
    state["_conv_stem.weight"] = state["_conv_stem.weight"] * 1.01
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match="weights_sha256"):
        clf.set_params(weights=str(path)).fit(X16, Y16)


def test_13_6_partial_fit_refuses_other_classes_than_the_first_call():
    """Point 6: the number of outputs is fixed by the first call's classes, as in scikit-learn."""
    clf = _head_only().partial_fit(X16, Y16, classes=["bright", "dark", "grey"])
    with pytest.raises(ValueError, match="classes=.*not the same"):
        clf.partial_fit(X16, Y16, classes=["bright", "dark"])
    assert clf.predict_proba(X16).shape == (16, 3)


# ------------------------------------------------------------- 14: input edge cases
def test_13_14_y_as_a_column_vector_is_flattened_with_a_warning():
    """Point 14: as scikit-learn's column_or_1d(warn=True)."""
    flat = _head_only(epochs=1, lr=1e-2).fit(X16, Y16).predict_proba(X16)
    with pytest.warns(DataConversionWarning):
        column = _head_only(epochs=1, lr=1e-2).fit(X16, Y16[:, None]).predict_proba(X16)
    np.testing.assert_array_equal(column, flat)
    # Two columns are a multi-label indicator matrix, which names make no 0/1 of.
    with pytest.raises(ValueError, match=r"y\[0, 0\] is 'dark', but a multi-label y is a 0/1 indicator matrix"):
        _head_only().fit(X16, np.c_[Y16, Y16])


@pytest.mark.parametrize(
    "y, error, match",
    [
        (None, ValueError, "requires y to be passed"),
        (["dark"] * 8 + [1] * 8, TypeError, r"mixes label types: str \(first at 0\), number \(first at 8\)"),
        (["dark"] * 8 + ["bright"] * 7 + [None], ValueError, r"y\[15\] is None"),
        ([0.0] * 8 + [1.0] * 7 + [np.nan], ValueError, "NaN"),
    ],
)
def test_13_14_bad_labels_are_clear_errors(y, error, match):
    """Point 14: fit(X, None) raised TypeError from len(); ["a", 1] silently
    became strings; None gave numpy's comparison error."""
    clf = _head_only()
    with pytest.raises(error, match=match):
        clf.fit(X16, y)
    assert not _learned(clf)


def test_13_14_negative_sample_weights_are_refused():
    """Point 14: as scikit-learn's _check_sample_weight(ensure_non_negative=True)."""
    weight = np.ones(16)
    weight[3] = -1
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        _head_only().fit(X16, Y16, sample_weight=weight)


def test_13_14_random_state_may_be_a_randomstate_instance():
    """Point 14: int, RandomState or None, via check_random_state."""
    params = dict(epochs=1, lr=1e-2, validation_fraction=0.25, cache=False)
    first = _head_only(**params, random_state=np.random.RandomState(5)).fit(X16, Y16).predict_proba(X16)
    again = _head_only(**params, random_state=np.random.RandomState(5)).fit(X16, Y16).predict_proba(X16)
    np.testing.assert_array_equal(first, again)
    shared = _head_only(**params, random_state=np.random.RandomState(5))
    assert not np.array_equal(shared.fit(X16, Y16).predict_proba(X16), shared.fit(X16, Y16).predict_proba(X16))
    for bad in (-1, 2**32, "seed"):
        with pytest.raises(ValueError, match=r"The 'random_state' parameter of FineTuneClassifier must be an int in"):
            _head_only(random_state=bad).fit(X16, Y16)


@pytest.fixture
def paths(tmp_path):
    names = []
    for i, image in enumerate(X16):
        names.append(str(tmp_path / f"img {i}.png"))
        Image.fromarray(image).save(names[-1])
    return names


def test_13_14_a_one_column_dataframe_is_a_column_of_images(paths):
    """Point 14: df[["path"]] (as ColumnTransformer passes it) was refused
    as a 2-D array; both estimators take it, and an (N, 1) object array."""
    frame = pd.DataFrame({"path": paths, "label": Y16})
    extractor = PretrainedFeatureExtractor(image_size=64)
    expected = extractor.fit_transform(paths)
    np.testing.assert_array_equal(extractor.transform(frame[["path"]]), expected)
    np.testing.assert_array_equal(extractor.transform(np.array(paths, dtype=object)[:, None]), expected)
    column = ColumnTransformer([("image", PretrainedFeatureExtractor(image_size=64), ["path"])])
    np.testing.assert_array_equal(column.fit_transform(frame), expected)
    clf = _head_only(epochs=1, lr=1e-2).fit(frame[["path"]], frame["label"])
    np.testing.assert_array_equal(clf.predict_proba(frame[["path"]]), clf.predict_proba(paths))
    with pytest.raises(ValueError, match=r"shape \(16, 2\).*df\['path'\]"):
        extractor.transform(frame)


@pytest.mark.parametrize(
    "X, match",
    [
        (Image.fromarray(X16[0]), r"single PIL image; wrap it in a list: \[X\]"),
        (torch.from_numpy(X16), r"torch tensor; pass a numpy array.*permute\(0, 2, 3, 1\)"),
        ([X16[0], torch.from_numpy(X16[1])], r"sample 1 .*torch tensor; pass a numpy array"),
    ],
    ids=["PIL image", "tensor batch", "tensor in a list"],
)
def test_13_14_a_bare_image_or_a_tensor_is_a_clear_error_in_both_estimators(X, match):
    """Point 14: where a batch is expected, say what to pass instead."""
    extractor = PretrainedFeatureExtractor(image_size=64, cache=False).fit()
    with pytest.raises(TypeError, match=match):
        extractor.transform(X)
    clf = _head_only()
    with pytest.raises(TypeError, match=match):
        clf.fit(X, Y16[:2])
    fitted = _head_only(epochs=1).fit(X16, Y16)
    with pytest.raises(TypeError, match=match):
        fitted.predict(X)
