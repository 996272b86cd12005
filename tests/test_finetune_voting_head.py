"""FineTuneClassifier's default head (issue 26): after fine-tuning, a logistic
regression per "blocks" layer of the fine-tuned backbone, voting as
LayerVotingClassifier votes; and the linear head where it still predicts."""

from __future__ import annotations

import gc
import pickle
import weakref

import numpy as np
import pytest
import torch
from model_files import payload_of, write_payload
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from skorchlite import FineTuneClassifier, LayerVotingClassifier, PretrainedFeatureExtractor
from skorchlite.finetune import voting_head
from skorchlite.finetune.voting_head import VotingHead
from skorchlite.inspect import resolve_model
from skorchlite.networks import embedding_module
from skorchlite.versioning import VERSION_KEY, InconsistentVersionWarning

RNG = np.random.default_rng(0)
X = np.concatenate([RNG.integers(0, 120, (9, 40, 40, 3)), RNG.integers(100, 256, (9, 40, 40, 3))]).astype(np.uint8)
Y = np.array(["dark"] * 6 + ["grey"] * 6 + ["bright"] * 6)
SETTINGS = dict(
    unfreeze=1, epochs=1, freeze_epochs=1, image_size=64, validation_fraction=0, random_state=0, cache=False
)


@pytest.fixture(scope="module")
def tuned():
    return FineTuneClassifier(**SETTINGS).fit(X, Y)


def blocks_widths(**settings) -> list[int]:
    return PretrainedFeatureExtractor(layer="blocks", image_size=64, cache=False, **settings).fit().layer_widths_


def test_the_default_head_votes_on_the_fine_tuned_blocks_as_layer_voting_does(tuned):
    assert tuned.head == "voting" and isinstance(tuned.voting_head_, VotingHead)
    assert tuned.voting_head_.widths == blocks_widths()
    # The same heads, fitted by LayerVotingClassifier on what transform gives of those layers.
    features = clone(tuned).set_params(layer="blocks")
    features.__dict__.update({k: v for k, v in vars(tuned).items() if k.endswith("_")})
    voting = LayerVotingClassifier(tuned.voting_head_.widths).fit(features.transform(X), Y)
    expected = voting.predict_proba(features.transform(X))
    assert list(voting.classes_) == list(tuned.classes_)
    np.testing.assert_allclose(tuned.predict_proba(X), expected, atol=1e-4)
    # Not the network's own head: that one predicts otherwise.
    linear = clone(tuned).set_params(head="linear").fit(X, Y)
    assert linear.voting_head_ is None
    assert not np.allclose(linear.predict_proba(X), expected, atol=1e-3)


def test_head_linear_after_fit_is_the_network_of_a_linear_fit(tuned):
    linear = clone(tuned).set_params(head="linear").fit(X, Y)
    switched = pickle.loads(pickle.dumps(tuned)).set_params(head="linear")
    np.testing.assert_allclose(switched.predict_proba(X), linear.predict_proba(X), atol=1e-6)
    # And back: the heads were kept.
    np.testing.assert_allclose(switched.set_params(head="voting").predict_proba(X), tuned.predict_proba(X), atol=1e-6)


def test_head_only_training_on_cached_embeddings_votes_as_the_frozen_pipeline():
    """unfreeze=0, augment=None leaves the backbone pretrained: the voting is the frozen recipe's."""
    clf = FineTuneClassifier(**(SETTINGS | dict(unfreeze=0, augment=None, cache=True))).fit(X, Y)
    assert clf._embedding_mode_
    extractor = PretrainedFeatureExtractor(layer="blocks", image_size=64)
    frozen = make_pipeline(extractor, LayerVotingClassifier(blocks_widths())).fit(X, Y)
    np.testing.assert_allclose(clf.predict_proba(X), frozen.predict_proba(X), atol=1e-4)


def test_tta_averages_the_voting_probabilities_of_the_image_and_its_mirror():
    # 56 px crops of a 64 px resize: centred to the pixel, so the crop of the mirror image is the crop's mirror.
    clf = FineTuneClassifier(**(SETTINGS | dict(image_size=56))).fit(X, Y)
    mirrored = X[:, :, ::-1].copy()
    expected = (clf.predict_proba(X) + clf.predict_proba(mirrored)) / 2
    assert not np.allclose(expected, clf.predict_proba(X), atol=1e-3)  # the mirror matters here
    np.testing.assert_allclose(clf.set_params(tta=True).predict_proba(X), expected, atol=1e-5)


def test_partial_fit_changes_the_network_under_the_heads_so_they_go(tuned):
    clf = pickle.loads(pickle.dumps(tuned)).partial_fit(X, Y)
    assert clf.voting_head_ is None
    np.testing.assert_allclose(clf.predict_proba(X), clf.set_params(head="linear").predict_proba(X))
    # A fit brings them back.
    assert clf.set_params(head="voting").fit(X, Y).voting_head_ is not None


def test_the_layers_are_traced_once_per_fitted_body_and_follow_its_training(tuned, monkeypatch):
    clf = pickle.loads(pickle.dumps(tuned)).set_params(layer="blocks")
    traced = []
    monkeypatch.setattr(voting_head, "embedding_module", lambda *a: traced.append(a) or embedding_module(*a))
    before = clf.transform(X)
    clf.predict_proba(X), clf.predict_proba(X[:2])  # the voting heads read the same layers
    assert len(traced) == 1
    # The view shares the body's weights: training in place reaches it.
    clf.partial_fit(X, Y)
    after = clf.transform(X)
    assert len(traced) == 1 and not np.allclose(before, after, atol=1e-3)
    np.testing.assert_allclose(after, pickle.loads(pickle.dumps(clf)).transform(X), atol=1e-5)  # a fresh trace
    assert len(traced) == 2


def test_a_traced_view_dies_with_its_estimator(tuned):
    clf = pickle.loads(pickle.dumps(tuned))
    clf.predict(X), clf.transform(X)  # the voting layers traced; the penultimate features are the body
    body = weakref.ref(clf.model_[0])
    assert list(voting_head._VIEWS[body()]) == [voting_head.voting_layers(clf)]
    del clf
    gc.collect()
    assert body() is None


def test_a_multi_label_fit_predicts_with_its_linear_head():
    labels = np.stack([np.arange(18) % 2, np.arange(18) // 9], axis=1)
    clf = FineTuneClassifier(**SETTINGS).fit(X, labels)
    assert clf.multilabel_ and clf.voting_head_ is None
    assert clf.predict(X).shape == labels.shape


def test_class_weight_reaches_the_heads(tuned):
    """None: the heads weigh the classes equally; a dict: as it says."""
    heavy = clone(tuned).set_params(class_weight={"dark": 1.0, "grey": 1.0, "bright": 50.0}).fit(X, Y)
    light = clone(tuned).set_params(class_weight={"dark": 1.0, "grey": 1.0, "bright": 0.02}).fit(X, Y)
    column = list(tuned.classes_).index("bright")
    assert heavy.predict_proba(X)[:, column].mean() > light.predict_proba(X)[:, column].mean()


def test_the_model_file_keeps_the_heads_and_an_older_file_keeps_its_linear_head(tuned, tmp_path):
    path = tuned.save_weights(tmp_path / "m.pt")
    loaded = FineTuneClassifier.load_weights(path)
    assert loaded.head == "voting" and loaded.voting_head_.widths == tuned.voting_head_.widths
    np.testing.assert_allclose(loaded.predict_proba(X), tuned.predict_proba(X), atol=1e-6)
    # Format 4 (skorchlite 0.5.0) had neither: it loads predicting and fitting with the linear head.
    payload = payload_of(path)
    del payload["params"]["head"], payload["fitted"]["voting_head_"]
    payload.update(version=4, skorchlite="0.5.0")
    old = FineTuneClassifier.load_weights(write_payload(payload, tmp_path / "v4.pt"))
    assert old.head == "linear" and old.voting_head_ is None
    np.testing.assert_allclose(old.predict_proba(X), clone(tuned).set_params(head="linear").fit(X, Y).predict_proba(X))


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda state: state.pop("heads.0.bias"), "voting_head_"),
        (lambda state: state.__setitem__("heads.0.weight", torch.zeros(3, 5)), "shapes"),
        (lambda state: state["heads.1.bias"].fill_(float("nan")), "non-finite"),
        (lambda state: state.__setitem__("heads.0.weight", "text"), "entry"),
    ],
)
def test_a_damaged_voting_head_in_a_file_fails_in_one_line_naming_it(tuned, tmp_path, damage, needle):
    payload = payload_of(tuned.save_weights(tmp_path / "m.pt"))
    damage(payload["fitted"]["voting_head_"])
    write_payload(payload, tmp_path / "m.pt")
    with pytest.raises(ValueError) as info:
        FineTuneClassifier.load_weights(tmp_path / "m.pt")
    message = str(info.value)
    assert "\n" not in message and "m.pt" in message and needle in message, message


def test_explanations_run_the_voting_heads_that_predict(tuned):
    explainable = resolve_model(tuned)
    _, pixels = explainable.load(list(X[:4]), torch.device("cpu"))
    with torch.inference_mode():
        proba = explainable.net(pixels).softmax(1).numpy()
    np.testing.assert_allclose(proba, tuned.predict_proba(X[:4]), atol=1e-4)


def test_a_warm_fit_without_every_class_keeps_the_linear_head_with_a_warning(tuned):
    """Heads fitted on two of three classes would give two columns for three classes."""
    clf = pickle.loads(pickle.dumps(tuned)).set_params(warm_start=True)
    some = Y != "grey"
    with pytest.warns(UserWarning, match="no sample of class 'grey'"):
        clf.fit(X[some], Y[some])
    assert clf.voting_head_ is None and clf.predict_proba(X).shape == (len(X), 3)
    np.testing.assert_allclose(clf.predict_proba(X), clf.set_params(head="linear").predict_proba(X))


def test_a_pickle_of_an_earlier_version_keeps_predicting_and_refitting_with_the_linear_head(tuned):
    linear = clone(tuned).set_params(head="linear").fit(X, Y)
    state = linear.__getstate__()
    del state["head"], state["voting_head_"]  # as skorchlite 0.5.0 pickled it
    state[VERSION_KEY] = "0.5.0"
    old = FineTuneClassifier.__new__(FineTuneClassifier)
    with pytest.warns(InconsistentVersionWarning, match="head='linear'"):
        old.__setstate__(state)
    assert old.head == "linear" and old.voting_head_ is None
    np.testing.assert_allclose(old.predict_proba(X), linear.predict_proba(X))
