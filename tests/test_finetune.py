"""FineTuneClassifier: sklearn contract, freezing, bad input, reproducibility,
probabilities, persistence, model selection, weights, early stopping,
history, failures during training, warm start, head-only mode, TTA."""

from __future__ import annotations

import copy

import joblib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score, train_test_split
from sklearn_checks import RUN, unexplained_checks

import skorchlite.finetune.loop
from skorchlite import FineTuneClassifier, PretrainedFeatureExtractor
from skorchlite.backbones import get_backbone

RNG = np.random.default_rng(0)
FAST = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Small and quick everywhere: 32 px arrays seen at 64 px, tiny batches, one
# or two epochs. Module fixtures never use the default cache (the isolating
# autouse fixture is function-scoped), hence cache=False there.
SMALL = dict(image_size=64, batch_size=8, validation_fraction=0, random_state=0)


def _toy(n_dark=8, n_bright=8, labels=("dark", "bright")):
    """Two visibly different classes: dark and bright noise."""
    dark = RNG.integers(0, 90, size=(n_dark, 32, 32, 3), dtype=np.uint8)
    bright = RNG.integers(160, 256, size=(n_bright, 32, 32, 3), dtype=np.uint8)
    return np.concatenate([dark, bright]), np.array([labels[0]] * n_dark + [labels[1]] * n_bright)


X16, Y16 = _toy()
X20, Y20 = _toy(10, 10)


def _head_only(**params):
    """Head-only embedding mode: the backbone runs once per image."""
    return FineTuneClassifier(**{**SMALL, "unfreeze": 0, "augment": None, **params})


def _group_of_key(groups, key):
    for i, group in enumerate(groups):
        if any(key.startswith(name + ".") for name in group):
            return i
    raise AssertionError(f"{key} belongs to no layer group")


@pytest.fixture(scope="module")
def pretrained_state():
    return {k: v.clone() for k, v in get_backbone("efficientnet_lite0").model.state_dict().items()}


@pytest.fixture(scope="module")
def finetuned():
    """unfreeze=2: one head epoch, one fine-tune epoch, weights of the last epoch."""
    clf = FineTuneClassifier(unfreeze=2, freeze_epochs=1, epochs=1, lr=1e-2, augment=None, cache=False, **SMALL)
    return clf.fit(X16, Y16)


# ------------------------------------------------------------- sklearn rules
@pytest.mark.parametrize("check", RUN, ids=lambda c: c.__name__)
def test_sklearn_check(check):
    check("FineTuneClassifier", FineTuneClassifier())


def test_every_sklearn_check_is_run_or_explained():
    assert unexplained_checks(FineTuneClassifier()) == set()


def test_tags_describe_image_input():
    tags = FineTuneClassifier().__sklearn_tags__()
    assert not tags.input_tags.two_d_array
    assert tags.input_tags.string and tags.input_tags.three_d_array
    assert tags.estimator_type == "classifier" and tags.classifier_tags.multi_class
    assert tags.requires_fit


def test_init_loads_nothing_and_validates_at_fit():
    clf = FineTuneClassifier(backbone="no_such_net", weights="nowhere.pth")
    assert clf.get_params()["backbone"] == "no_such_net"  # validation waits for fit
    assert not [k for k in vars(clf) if k.endswith("_")]
    with pytest.raises(ValueError, match="no_such_net"):
        clf.fit(X16, Y16)
    with pytest.raises(NotFittedError):
        FineTuneClassifier().predict(X16)


# ------------------------------------------------------------- freezing
def _changes(clf, pretrained_state):
    """Groups whose weights (conv, BatchNorm scale/shift) and whose BatchNorm
    statistics moved; asserts that no frozen group (< 7) moved at all."""
    groups = clf.layer_groups_
    assert len(groups) == 9
    state = clf.model_[0].state_dict()
    assert state.keys() == pretrained_state.keys()
    changed_params, changed_stats = set(), set()
    for key, value in state.items():
        group = _group_of_key(groups, key)
        same = torch.equal(value, pretrained_state[key])
        if group < 7:
            assert same, f"{key} of frozen group {group} moved"
        elif not same:
            if key.endswith(("running_mean", "running_var")):
                changed_stats.add(group)
            elif key.endswith(("weight", "bias")):
                changed_params.add(group)
    return changed_params, changed_stats


def test_unfreeze_2_trains_only_the_last_two_groups(finetuned, pretrained_state):
    changed_params, changed_stats = _changes(finetuned, pretrained_state)
    assert changed_params == {7, 8}, "every unfrozen group trains"
    assert changed_stats == set(), "batchnorm='eval': every BatchNorm keeps its ImageNet statistics"
    bn_scale = finetuned.model_[0].state_dict()["_bn1.weight"]
    assert not torch.equal(bn_scale, pretrained_state["_bn1.weight"]), "unfrozen BatchNorm scale trains"


def test_batchnorm_train_updates_unfrozen_statistics(pretrained_state):
    clf = FineTuneClassifier(
        unfreeze=2, freeze_epochs=1, epochs=1, lr=1e-2, augment=None, cache=False, batchnorm="train", **SMALL
    ).fit(X16, Y16)
    changed_params, changed_stats = _changes(clf, pretrained_state)
    assert changed_params == {7, 8}
    assert changed_stats == {7, 8}, "unfrozen BatchNorm layers update their statistics"


@pytest.mark.parametrize("augment", [None, "default"], ids=["embedding-mode", "images"])
def test_unfreeze_0_leaves_the_backbone_untouched(augment, pretrained_state):
    clf = FineTuneClassifier(unfreeze=0, epochs=1, lr=1e-2, augment=augment, **SMALL).fit(X16, Y16)
    assert clf._embedding_mode_ == (augment is None)
    for key, value in clf.model_[0].state_dict().items():
        assert torch.equal(value, pretrained_state[key]), key
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        initial = torch.nn.Linear(1280, 2).weight
    assert not torch.equal(clf.model_[1].weight, initial)  # the head itself trained


def test_unfreeze_all_trains_the_stem(pretrained_state):
    clf = FineTuneClassifier(
        unfreeze="all", freeze_epochs=1, epochs=1, lr=1e-2, augment=None, cache=False, batchnorm="train", **SMALL
    )
    state = clf.fit(X16, Y16).model_[0].state_dict()
    for key in ("_conv_stem.weight", "_bn0.weight", "_bn0.running_mean", "_bn0.running_var"):
        assert not torch.equal(state[key], pretrained_state[key]), key


# ------------------------------------------------------------- bad input
def test_unfreeze_beyond_the_layer_groups_fails_before_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(skorchlite.finetune.loop.Trainer, "run", fail)
    clf = FineTuneClassifier(unfreeze=10, **SMALL)
    with pytest.raises(ValueError, match=r"unfreeze=10.*9 layer groups"):
        clf.fit(X16, Y16)
    assert not hasattr(clf, "model_")


@pytest.mark.parametrize(
    "params, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"lr": -1}, "lr"),
        ({"lr": 0}, "lr"),
        ({"optimizer": "adam"}, "optimizer"),
        ({"schedule": "linear"}, "schedule"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"validation_fraction": 0, "n_iter_no_change": 2}, "n_iter_no_change"),
        ({"unfreeze": -1}, "unfreeze"),
        ({"unfreeze": "some"}, "unfreeze"),
        ({"batch_size": 0}, "batch_size"),
        ({"augment": "strong"}, "augment"),
        ({"lr_decay": 0}, "lr_decay"),
        ({"batchnorm": "frozen"}, "batchnorm"),
    ],
)
def test_bad_parameters_are_reported_at_fit(params, message):
    clf = FineTuneClassifier(**{**SMALL, **params})
    with pytest.raises(ValueError, match=message):
        clf.fit(X16, Y16)
    assert not hasattr(clf, "model_")


def test_a_single_class_is_refused():
    with pytest.raises(ValueError, match="single class"):
        FineTuneClassifier(**SMALL).fit(X16, ["a"] * 16)


def test_x_and_y_lengths_must_agree():
    with pytest.raises(ValueError, match="16 images but y has 15"):
        FineTuneClassifier(**SMALL).fit(X16, Y16[:15])


def test_an_unreadable_image_names_its_index_and_path(tmp_path):
    paths = []
    for i, image in enumerate(X16[:4]):
        paths.append(tmp_path / f"img {i}.png")
        Image.fromarray(image).save(paths[-1])
    bad = tmp_path / "garbage (3).png"
    bad.write_bytes(b"\x00\x01 this is not an image \xff" * 10)
    paths[3] = bad
    with pytest.raises(ValueError, match=r"sample 3.*garbage \(3\)\.png"):
        FineTuneClassifier(unfreeze=1, epochs=1, **{**SMALL, "batch_size": 2}).fit(paths, Y16[[0, 1, 8, 9]])


def test_labels_outside_classes_are_refused_by_partial_fit():
    with pytest.raises(ValueError, match="bright"):
        FineTuneClassifier(**SMALL).partial_fit(X16, Y16, classes=["dark", "grey"])


# ------------------------------------------------------------- reproducibility
def test_same_random_state_same_probabilities():
    params = dict(unfreeze=1, freeze_epochs=1, epochs=1, augment="default", lr=1e-2, **SMALL)
    first = FineTuneClassifier(**params).fit(X16, Y16).predict_proba(X16)
    second = FineTuneClassifier(**params).fit(X16, Y16).predict_proba(X16)
    np.testing.assert_array_equal(first, second)
    other = FineTuneClassifier(**{**params, "random_state": 1}).fit(X16, Y16).predict_proba(X16)
    assert not np.array_equal(first, other)


def test_fit_returns_self_and_refit_is_idempotent():
    clf = FineTuneClassifier(unfreeze=1, freeze_epochs=1, epochs=1, lr=1e-2, **SMALL)
    params = clf.get_params()
    assert clf.fit(X16, Y16) is clf and clf.get_params() == params
    first = clf.predict_proba(X16)
    assert clf.fit(X16, Y16) is clf  # a second fit starts afresh, not from the first
    np.testing.assert_array_equal(clf.predict_proba(X16), first)
    assert len(clf.history_) == 2


def test_fit_leaves_the_global_torch_rng_alone():
    before = torch.get_rng_state()
    FineTuneClassifier(unfreeze=1, freeze_epochs=1, epochs=1, **SMALL).fit(X16, Y16)
    assert torch.equal(torch.get_rng_state(), before)


def test_augmentation_is_applied_to_every_training_image_only():
    seen = []

    def augment(image):
        seen.append(image.size)
        return image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)

    params = dict(unfreeze=1, freeze_epochs=1, epochs=1, lr=1e-2, **{**SMALL, "validation_fraction": 0.25})
    custom = FineTuneClassifier(augment=augment, **params).fit(X16, Y16)
    # 12 training images, 2 epochs, not validation; each image as kept in memory, its
    # shorter side at the preprocessing's resize size (73 for image_size=64).
    assert len(seen) == 2 * 12 and set(seen) == {(73, 73)}
    custom.predict_proba(X16)
    assert len(seen) == 24  # never at prediction
    plain = FineTuneClassifier(augment=None, **params).fit(X16, Y16)
    default = FineTuneClassifier(augment="default", **params).fit(X16, Y16)
    assert not np.array_equal(plain.predict_proba(X16), default.predict_proba(X16))
    assert not np.array_equal(plain.predict_proba(X16), custom.predict_proba(X16))


# ------------------------------------------------------------- probabilities
LABEL_SETS = [["a", "b"], [0, 1], ["cat", "dog", "fish"], ["b", "a"], [10, -3, 7]]


@FAST
@given(labels=st.sampled_from(LABEL_SETS))
def test_predict_proba_rows_columns_and_label_types(labels):
    # One brightness level per label, in the order given (not sorted).
    rng = np.random.default_rng(len(labels))
    levels = np.linspace(20, 235, len(labels))
    X = np.concatenate(
        [np.clip(rng.normal(level, 12, size=(6, 32, 32, 3)), 0, 255).astype(np.uint8) for level in levels]
    )
    y = np.repeat(np.array(labels), 6)
    clf = _head_only(epochs=5, lr=3e-2).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), len(labels)) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    assert (proba >= 0).all()
    np.testing.assert_array_equal(clf.classes_, np.sort(np.array(labels)))
    assert clf.classes_.dtype.kind == np.array(labels).dtype.kind
    prediction = clf.predict(X)
    np.testing.assert_array_equal(prediction, clf.classes_[proba.argmax(1)])
    # Columns follow classes_: the head learns this easy task, so a mix-up would show.
    assert (prediction == y).mean() >= 0.9


# ------------------------------------------------------------- persistence
def test_clone_is_unfitted_with_the_same_params(finetuned):
    copy_ = clone(finetuned)
    assert copy_.get_params() == finetuned.get_params()
    assert not [k for k in vars(copy_) if k.endswith("_")]


def test_joblib_round_trip_predicts_identically_and_holds_weights_only(finetuned, tmp_path):
    path = tmp_path / "clf.joblib"
    joblib.dump(finetuned, path)
    assert 10e6 < path.stat().st_size < 20e6  # lite0 body + head in float32
    assert X16.tobytes() not in path.read_bytes()  # no training images
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.classes_, finetuned.classes_)
    np.testing.assert_array_equal(loaded.predict_proba(X16), finetuned.predict_proba(X16))


# ------------------------------------------------------------- model selection
def test_grid_search_and_cross_val_score():
    base = FineTuneClassifier(freeze_epochs=1, epochs=1, **SMALL)
    search = GridSearchCV(base, {"unfreeze": [0, 1], "lr": [1e-2, 3e-3]}, cv=2).fit(X20, Y20)
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 4 and np.isfinite(scores).all()
    assert search.best_params_["unfreeze"] in (0, 1)
    assert search.predict(X20[:3]).shape == (3,)
    cv = StratifiedKFold(n_splits=2, shuffle=True, random_state=0)
    scores = cross_val_score(_head_only(epochs=3, lr=1e-2), X20, Y20, cv=cv)
    assert np.isfinite(scores).all() and scores.mean() > 0.8


# ------------------------------------------------------------- weights
@pytest.fixture(scope="module")
def imbalanced():
    return _toy(24, 8)


def test_class_weight_balanced_and_dict_equal_the_matching_sample_weights(imbalanced):
    X, y = imbalanced
    params = dict(epochs=2, lr=1e-2, cache=False, head="linear")  # the loss's weights, not the voting heads'
    plain = _head_only(**params).fit(X, y).predict_proba(X)
    balanced = _head_only(class_weight="balanced", **params).fit(X, y).predict_proba(X)
    assert not np.allclose(plain, balanced)
    bright = list(np.unique(y)).index("bright")  # the minority class
    assert balanced[:, bright].mean() > plain[:, bright].mean()
    # "balanced" is n / (2 n_c) per class: the same as those sample weights.
    per_class = {"dark": 32 / (2 * 24), "bright": 32 / (2 * 8)}
    as_samples = _head_only(**params).fit(X, y, sample_weight=[per_class[c] for c in y]).predict_proba(X)
    np.testing.assert_array_equal(balanced, as_samples)
    as_dict = _head_only(class_weight=per_class, **params).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(balanced, as_dict)


def test_sample_weight_of_ones_equals_none():
    params = dict(unfreeze=1, freeze_epochs=1, epochs=1, lr=1e-2, **SMALL)
    none = FineTuneClassifier(**params).fit(X16, Y16).predict_proba(X16)
    ones = FineTuneClassifier(**params).fit(X16, Y16, sample_weight=np.ones(16)).predict_proba(X16)
    np.testing.assert_array_equal(none, ones)


def test_zero_sample_weights_do_not_break_training():
    weight = np.zeros(16)
    weight[[0, 15]] = 1.0  # most batches of two hold only zero weights
    clf = _head_only(epochs=2, batch_size=2).fit(X16, Y16, sample_weight=weight)
    assert np.isfinite([h["train_loss"] for h in clf.history_]).all()
    assert np.isfinite(clf.predict_proba(X16)).all()


# ------------------------------------------------------------- early stopping
def _valid_loss_now(clf, X, y, random_state):
    """The validation loss of the weights the estimator holds, computed as fit does."""
    target = np.searchsorted(clf.classes_, y)
    _, valid = train_test_split(
        np.arange(len(y)), test_size=clf.validation_fraction, stratify=target, random_state=random_state
    )
    features = PretrainedFeatureExtractor(image_size=clf.image_size, batch_size=clf.batch_size, cache=False)
    embeddings = torch.from_numpy(features.fit_transform(X))
    with torch.inference_mode():
        logits = clf.model_[1](embeddings[torch.as_tensor(valid)])
    return F.cross_entropy(logits, torch.as_tensor(target[valid])).item()


def test_early_stopping_keeps_the_best_epoch():
    # Overlapping classes, so that no epoch reaches a validation loss of 0
    # and the best epoch's weights differ from the last one's in what they score.
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.integers(0, 170, (12, 32, 32, 3)), rng.integers(85, 256, (12, 32, 32, 3))]).astype(np.uint8)
    y = np.array(["dark"] * 12 + ["bright"] * 12)
    # A huge constant rate makes later epochs worse, so training stops early.
    clf = _head_only(lr=0.3, schedule=None, validation_fraction=0.25, n_iter_no_change=2, epochs=6)
    history = clf.fit(X, y).history_
    assert len(history) < 6
    best = min(history, key=lambda h: h["valid_loss"])
    assert clf.best_epoch_ == best["epoch"] < history[-1]["epoch"]
    assert history[-1]["valid_loss"] > best["valid_loss"] + 0.005  # the last epoch's weights score otherwise
    assert _valid_loss_now(clf, X, y, 0) == pytest.approx(best["valid_loss"], rel=1e-4)


# ------------------------------------------------------------- history
def test_history_phases_and_verbose_lines(capsys):
    clf = FineTuneClassifier(
        unfreeze=1, freeze_epochs=1, epochs=2, lr=1e-2, verbose=1, **{**SMALL, "validation_fraction": 0.25}
    ).fit(X16, Y16)
    history = clf.history_
    assert [h["phase"] for h in history] == ["head", "fine-tune", "fine-tune"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for h in history:
        assert set(h) == {"epoch", "phase", "train_loss", "valid_loss", "valid_accuracy", "lr", "seconds"}
        assert np.isfinite([h["train_loss"], h["valid_loss"]]).all()
        assert 0 <= h["valid_accuracy"] <= 1 and h["lr"] > 0 and h["seconds"] >= 0
    assert history[1]["lr"] <= 1e-2 / 2 + 1e-12  # the fine-tune phase peaks at lr / 2
    assert clf.best_epoch_ == min(history, key=lambda h: h["valid_loss"])["epoch"]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 3 and all(line.startswith("epoch") for line in lines)
    assert "fine-tune" in lines[-1] and "valid_loss" in lines[-1]


def test_no_validation_gives_nan_validation_columns_and_the_last_epoch(finetuned):
    assert all(np.isnan(h["valid_loss"]) and np.isnan(h["valid_accuracy"]) for h in finetuned.history_)
    assert finetuned.best_epoch_ == finetuned.history_[-1]["epoch"] == 2


# ------------------------------------------------------------- failures during training
def _loss_failing_at(call, exc_or_nan):
    real = skorchlite.finetune.loop.weighted_loss
    calls = []

    def loss(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            if exc_or_nan == "nan":
                return real(*args, **kwargs) * float("nan")
            raise exc_or_nan
        return real(*args, **kwargs)

    return loss


def test_a_nan_loss_names_epoch_and_rate_and_keeps_a_fitted_estimator(monkeypatch):
    # 16 images in batches of 8: two calls per epoch, so call 3 is in epoch 2.
    monkeypatch.setattr(skorchlite.finetune.loop, "weighted_loss", _loss_failing_at(3, "nan"))
    clf = FineTuneClassifier(unfreeze=1, freeze_epochs=1, epochs=2, lr=1e-2, **SMALL)
    with pytest.raises(FloatingPointError, match=r"nan in epoch 2 at learning rate \d"):
        clf.fit(X16, Y16)
    assert len(clf.history_) == 1 and clf.best_epoch_ == 1
    proba = clf.predict_proba(X16)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)


def test_ctrl_c_returns_a_fitted_estimator_with_a_warning(monkeypatch):
    monkeypatch.setattr(skorchlite.finetune.loop, "weighted_loss", _loss_failing_at(3, KeyboardInterrupt()))
    clf = FineTuneClassifier(unfreeze=1, freeze_epochs=1, epochs=2, lr=1e-2, **SMALL)
    with pytest.warns(RuntimeWarning, match="interrupted after epoch 1"):
        assert clf.fit(X16, Y16) is clf
    assert len(clf.history_) == 1 and clf.best_epoch_ == 1
    assert clf.predict(X16).shape == (16,)


# ------------------------------------------------------------- warm start
def test_warm_start_continues_and_grows_the_history():
    clf = FineTuneClassifier(unfreeze=1, freeze_epochs=1, epochs=1, lr=1e-2, **SMALL).fit(X16, Y16)
    model = clf.model_
    assert len(clf.history_) == 2
    clf.set_params(warm_start=True, epochs=2).fit(X16, Y16)
    assert clf.model_ is model  # continued, not rebuilt
    assert [h["epoch"] for h in clf.history_] == [1, 2, 3, 4]
    assert [h["phase"] for h in clf.history_[2:]] == ["fine-tune", "fine-tune"]  # no second head warm-up
    clf.set_params(warm_start=False).fit(X16, Y16)
    assert clf.model_ is not model and len(clf.history_) == 3  # a cold fit starts over


def test_warm_start_best_epoch_is_one_this_fit_restored():
    clf = _head_only(epochs=2, lr=1e-2).fit(X16, Y16)  # no validation: NaN losses
    clf.set_params(warm_start=True, validation_fraction=0.25).fit(X16, Y16)
    assert len(clf.history_) == 4
    assert clf.best_epoch_ in (3, 4)
    assert clf.best_epoch_ == min(clf.history_[2:], key=lambda h: h["valid_loss"])["epoch"]


def test_warm_start_refuses_unseen_labels():
    clf = _head_only(epochs=1, warm_start=True).fit(X16, Y16)
    with pytest.raises(ValueError, match="not seen"):
        clf.fit(X16, np.where(Y16 == "dark", "grey", Y16))


def test_partial_fit_adds_one_epoch_per_call():
    clf = FineTuneClassifier(unfreeze=1, lr=1e-2, **SMALL)
    for calls in (1, 2, 3):
        clf.partial_fit(X16, Y16, classes=["bright", "dark", "grey"])
        assert len(clf.history_) == calls and clf.history_[-1]["epoch"] == calls
        assert clf.history_[-1]["phase"] == "fine-tune"
    np.testing.assert_array_equal(clf.classes_, ["bright", "dark", "grey"])
    proba = clf.predict_proba(X16)
    assert proba.shape == (16, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)


# ------------------------------------------------------------- head-only embedding mode
def test_head_only_mode_runs_the_backbone_once_per_image(tmp_path, monkeypatch):
    clf = _head_only(epochs=2, lr=1e-2, cache=str(tmp_path)).fit(X16, Y16)
    assert clf._embedding_mode_
    first = clf.predict_proba(X16)

    def fail(*args, **kwargs):
        raise AssertionError("the backbone ran on a warm cache")

    monkeypatch.setattr(PretrainedFeatureExtractor, "_embed", fail)
    again = clone(clf).fit(X16, Y16)
    np.testing.assert_array_equal(again.predict_proba(X16), first)


def test_augmentation_or_unfreezing_leaves_embedding_mode():
    assert not _head_only(epochs=1, augment="default").fit(X16, Y16)._embedding_mode_
    assert not _head_only(epochs=1, unfreeze=1, freeze_epochs=0).fit(X16, Y16)._embedding_mode_


# ------------------------------------------------------------- TTA
@pytest.mark.parametrize("mode", ["fine-tuned", "embedding-mode"])
def test_tta_changes_the_probabilities_and_they_still_sum_to_one(finetuned, mode):
    clf = finetuned if mode == "fine-tuned" else _head_only(epochs=1, lr=1e-2).fit(X16, Y16)
    plain = clf.predict_proba(X16)
    tta = copy.deepcopy(clf).set_params(tta=True).predict_proba(X16)
    assert tta.shape == plain.shape
    assert not np.allclose(tta, plain, atol=1e-6)
    np.testing.assert_allclose(tta.sum(1), 1.0, atol=1e-5)
    assert (tta >= 0).all()


def test_numpy_numbers_are_accepted_and_booleans_are_not():
    from skorchlite import FineTuneClassifier as Clf

    Clf(lr=np.float32(1e-3), unfreeze=np.int64(1))._validate_params()
    with pytest.raises(ValueError, match="The 'unfreeze' parameter of FineTuneClassifier must be"):
        Clf(unfreeze=True)._validate_params()
