"""skorchlite.inspect.explainable: the model resolver, with the model's mean/std
normalisation inside the graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inspect_helpers import CAT, RNG, patches
from PIL import Image
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from skorchlite import FineTuneClassifier, PretrainedFeatureExtractor
from skorchlite.backbones import get_backbone
from skorchlite.inspect import grad_cam
from skorchlite.inspect.explainable import resolve_model

pytestmark = pytest.mark.usefixtures("inspect_draws")


# ------------------------------------------------------------- preprocessing
def test_normalising_inside_the_graph_reproduces_the_model():
    backbone = get_backbone("efficientnet_lite0")
    image = Image.open(CAT).convert("RGB")
    expected = backbone.classifier(backbone.model(backbone.preprocessing.transform()(image)[None]))
    explainable = resolve_model("efficientnet_lite0")
    _, pixels = explainable.load([CAT], torch.device("cpu"))
    assert 0 <= pixels.min() and pixels.max() <= 1
    with torch.inference_mode():
        np.testing.assert_allclose(explainable.net(pixels), expected, atol=1e-4)


# ------------------------------------------------------------- the resolver
def test_finetuned_model_resolves_to_its_own_probabilities(patch_clf):
    X = patches(4, "left")
    explainable = resolve_model(patch_clf)
    _, pixels = explainable.load(list(X), torch.device("cpu"))
    with torch.inference_mode():
        proba = explainable.net(pixels).softmax(1).numpy()
    np.testing.assert_allclose(proba, patch_clf.predict_proba(X), atol=1e-4)
    assert list(explainable.classes) == list(patch_clf.classes_)


@pytest.mark.parametrize(
    "extractor, head",
    [
        (dict(), lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))),
        (dict(layer="_blocks.10", pooling="avg+max"), lambda: LogisticRegression(max_iter=2000)),
        (dict(pooling="max"), lambda: LinearSVC()),
    ],
    ids=["nested-scaler-logreg", "layer-avg+max", "max-linearsvc"],
)
def test_extractor_pipelines_resolve_to_their_decisions(extractor, head):
    X = np.concatenate([patches(6, "left"), patches(6, None), RNG.integers(150, 256, (6, 64, 64, 3), dtype=np.uint8)])
    y = np.repeat(["square", "plain", "bright"], 6)
    if isinstance(head(), LinearSVC):
        X, y = X[:12], y[:12]  # binary: one row of coef_
    pipe = make_pipeline(PretrainedFeatureExtractor(image_size=64, cache=False, **extractor), head()).fit(X, y)
    explainable = resolve_model(pipe)
    _, pixels = explainable.load(list(X), torch.device("cpu"))
    with torch.inference_mode():
        logits = explainable.net(pixels).numpy()
    decision = pipe.decision_function(X)
    if decision.ndim == 1:
        decision = logits[:, 1] - logits[:, 0], decision
        np.testing.assert_allclose(*decision, atol=1e-3, rtol=1e-3)
    else:
        np.testing.assert_allclose(logits, decision, atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(torch.tensor(logits).softmax(1), pipe.predict_proba(X), atol=1e-4)
    assert (explainable.classes[logits.argmax(1)] == pipe.predict(X)).all()


def test_other_models_are_refused_with_what_is_accepted():
    X, y = np.concatenate([patches(3, None), patches(3, "left")]), ["a"] * 3 + ["b"] * 3
    for model in (LogisticRegression(), 42, make_pipeline(StandardScaler(), LogisticRegression())):
        with pytest.raises(TypeError, match="backbone name.*FineTuneClassifier.*PretrainedFeatureExtractor"):
            grad_cam(model, X)
    # A linear-kernel SVC has coef_, but decides one-vs-one: not one linear score per class.
    features = PretrainedFeatureExtractor(image_size=64, cache=False)
    svc = make_pipeline(features, SVC(kernel="linear")).fit(np.concatenate([X, patches(3, "right")]), [*y, *"ccc"])
    with pytest.raises(TypeError, match="does not compute one linear score per class"):
        resolve_model(svc)
    with pytest.raises(ValueError, match="Unknown backbone 'resnet_5'"):
        resolve_model("resnet_5")
    with pytest.raises(NotFittedError):
        resolve_model(FineTuneClassifier())
    with pytest.raises(ValueError, match="image_size applies to a backbone name"):
        resolve_model(make_pipeline(features.fit(X), LogisticRegression().fit(features.transform(X), y)), image_size=64)
