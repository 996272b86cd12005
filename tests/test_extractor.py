"""PretrainedFeatureExtractor: sklearn contract, invariants, cache behaviour, bad input."""

from __future__ import annotations

import multiprocessing
import pickle

import joblib
import numpy as np
import pytest
import torch
from cache_workers import SHARED, claim_of_a_dead_process, count_forward, embed_rows, small_extractor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn_checks import RUN, unexplained_checks

from conftest import BUSI, requires_busi
from skorchlite import PretrainedFeatureExtractor
from skorchlite.cache import resolve_cache
from skorchlite.images import check_images, content_key

RNG = np.random.default_rng(0)
# 32 px images keep the tests fast; the backbone resizes them to 224 px.
IMAGES = RNG.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
# Small inputs for the cheaper property tests.
FAST = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def reference():
    """Embeddings of IMAGES computed without any cache."""
    return PretrainedFeatureExtractor(cache=False).fit_transform(IMAGES)


# ------------------------------------------------------------- sklearn rules
@pytest.mark.parametrize("check", RUN, ids=lambda c: c.__name__)
def test_sklearn_check(check):
    check("PretrainedFeatureExtractor", PretrainedFeatureExtractor())


def test_every_sklearn_check_is_run_or_explained():
    assert unexplained_checks(PretrainedFeatureExtractor()) == set()


def test_tags_describe_image_input():
    tags = PretrainedFeatureExtractor().__sklearn_tags__()
    assert not tags.input_tags.two_d_array
    assert tags.input_tags.string and tags.input_tags.three_d_array
    assert tags.transformer_tags.preserves_dtype == []
    assert tags.requires_fit and not tags.target_tags.required


def test_init_loads_nothing_and_fit_reads_no_image(tmp_path):
    extractor = PretrainedFeatureExtractor(backbone="no_such_net", pooling="median")
    assert extractor.get_params()["backbone"] == "no_such_net"  # validation waits for fit
    missing = [str(tmp_path / "not-there.png")]
    fitted = PretrainedFeatureExtractor().fit(missing)  # fit never opens X
    assert fitted.n_features_out_ == 1280
    with pytest.raises(ValueError, match="pooling"):
        extractor.fit(missing)


def test_fit_returns_self_and_refit_is_idempotent(reference):
    extractor = PretrainedFeatureExtractor(cache=False)
    params = extractor.get_params()
    assert extractor.fit(IMAGES) is extractor
    first = extractor.transform(IMAGES)
    assert extractor.fit(IMAGES[:1]) is extractor and extractor.get_params() == params
    np.testing.assert_array_equal(extractor.transform(IMAGES), first)


def test_transform_before_fit_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        PretrainedFeatureExtractor().transform(IMAGES)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"layer": 3}, "layer"),
        ({"device": "tpu9"}, "tpu9"),
        ({"cache": 1.5}, "cache"),
    ],
)
def test_bad_parameters_are_reported_at_fit(params, message):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=message):
        PretrainedFeatureExtractor(**params).fit()


def test_output_shape_dtype_and_feature_names(reference):
    assert reference.shape == (6, 1280) and reference.dtype == np.float32
    assert np.isfinite(reference).all()
    extractor = PretrainedFeatureExtractor(cache=False).fit()
    names = extractor.get_feature_names_out()
    assert len(names) == 1280 and names[0] == "pretrainedfeatureextractor0"


def test_set_output_pandas():
    pd = pytest.importorskip("pandas")
    extractor = PretrainedFeatureExtractor().set_output(transform="pandas")
    frame = extractor.fit_transform(IMAGES[:2])
    assert isinstance(frame, pd.DataFrame) and frame.shape == (2, 1280)
    assert frame.columns[-1] == "pretrainedfeatureextractor1279"


def test_pickle_holds_no_torch_module_and_transforms_identically(tmp_path, reference):
    extractor = PretrainedFeatureExtractor(cache=False).fit()
    path = tmp_path / "extractor.joblib"
    joblib.dump(extractor, path)
    assert path.stat().st_size < 10_000
    assert b"torch" not in pickle.dumps(extractor)
    np.testing.assert_array_equal(joblib.load(path).transform(IMAGES), reference)


def test_clone_is_unfitted_and_keeps_the_cache_setting(tmp_path):
    extractor = PretrainedFeatureExtractor(cache=str(tmp_path)).fit()
    copy = clone(extractor)
    assert copy.cache == str(tmp_path)
    assert not hasattr(copy, "fingerprint_")


# ------------------------------------------------------------- invariants
@FAST
@given(batch_size=st.integers(1, 7))
def test_batch_size_invariance(batch_size, reference):
    out = PretrainedFeatureExtractor(batch_size=batch_size, cache=False).fit_transform(IMAGES)
    np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-5)


@FAST
@given(perm=st.permutations(range(6)))
def test_permutation_equivariance(perm, reference):
    perm = list(perm)
    out = PretrainedFeatureExtractor(batch_size=4, cache=False).fit_transform(IMAGES[perm])
    np.testing.assert_allclose(out, reference[perm], rtol=1e-4, atol=1e-5)


@FAST
@given(rows=st.lists(st.integers(0, 5), min_size=1, max_size=8))
def test_cache_on_equals_cache_off(rows, reference, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    extractor = PretrainedFeatureExtractor(cache=str(cache)).fit()
    first = extractor.transform(IMAGES[rows])
    second = extractor.transform(IMAGES[rows])  # served from the cache
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, reference[rows], rtol=1e-4, atol=1e-5)


def test_array_and_png_of_the_same_pixels_embed_identically(tmp_path, reference):
    paths = []
    for i, image in enumerate(IMAGES):
        paths.append(tmp_path / f"image ({i}).png")
        Image.fromarray(image).save(paths[-1])
    out = PretrainedFeatureExtractor(cache=False).fit_transform(paths)
    np.testing.assert_array_equal(out, reference)


def test_input_forms_agree(reference):
    extractor = PretrainedFeatureExtractor(cache=False).fit()
    pil = [Image.fromarray(image) for image in IMAGES]
    np.testing.assert_array_equal(extractor.transform(pil), reference)
    np.testing.assert_array_equal(extractor.transform(list(IMAGES)), reference)
    floats = IMAGES.astype(np.float32) / 255
    np.testing.assert_array_equal(extractor.transform(floats), reference)
    gray = extractor.transform(IMAGES[:, :, :, 0])
    assert gray.shape == (6, 1280)


def test_images_of_different_sizes():
    images = [RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in [(20, 40), (64, 33), (300, 200)]]
    assert PretrainedFeatureExtractor(cache=False).fit_transform(images).shape == (3, 1280)


# ------------------------------------------------------------- cache
def _entries(cache_dir) -> int:
    return resolve_cache(str(cache_dir)).size()[0]


def test_cache_is_filled_once_per_distinct_image(tmp_path, monkeypatch):
    extractor = PretrainedFeatureExtractor(cache=str(tmp_path)).fit()
    duplicated = np.concatenate([IMAGES[:3], IMAGES[:3]])
    out = extractor.transform(duplicated)
    np.testing.assert_array_equal(out[:3], out[3:])
    assert _entries(tmp_path) == 3

    # Second run: every row from the cache, the network never runs.
    def fail(*args, **kwargs):
        raise AssertionError("the network ran on a warm cache")

    monkeypatch.setattr(PretrainedFeatureExtractor, "_embed", fail)
    np.testing.assert_array_equal(clone(extractor).fit().transform(duplicated), out)


def test_cache_keys_depend_on_pooling_and_layer(tmp_path):
    avg = PretrainedFeatureExtractor(cache=str(tmp_path)).fit_transform(IMAGES[:2])
    both = PretrainedFeatureExtractor(cache=str(tmp_path), pooling="avg+max").fit_transform(IMAGES[:2])
    assert both.shape == (2, 2560)
    np.testing.assert_allclose(both[:, :1280], avg, rtol=1e-4, atol=1e-5)
    layer = PretrainedFeatureExtractor(cache=str(tmp_path), layer="_blocks.10").fit_transform(IMAGES[:2])
    assert layer.shape == (2, 112)
    assert _entries(tmp_path) == 6


def test_unknown_layer_lists_the_available_names():
    with pytest.raises(ValueError, match=r"no layer '_blocks.99'.*--layers efficientnet_lite0"):
        PretrainedFeatureExtractor(layer="_blocks.99").fit()


def test_a_changed_file_is_never_served_stale(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(IMAGES[0]).save(path)
    extractor = PretrainedFeatureExtractor(cache=str(tmp_path / "cache")).fit()
    first = extractor.transform([path])
    Image.fromarray(IMAGES[1]).save(path)
    np.testing.assert_array_equal(extractor.transform([path]), extractor.transform(IMAGES[1:2]))
    assert not np.array_equal(extractor.transform([path]), first)


# ------------------------------------------------------------- bad input
def test_a_bad_image_names_index_and_path_and_caches_nothing_for_it(tmp_path):
    good = tmp_path / "good (1).png"
    Image.fromarray(IMAGES[0]).save(good)
    bad = tmp_path / "bad (2).png"
    bad.write_bytes(b"this is not a png")
    cache = tmp_path / "cache"
    extractor = PretrainedFeatureExtractor(cache=str(cache), batch_size=1).fit()
    with pytest.raises(ValueError, match=r"sample 1.*bad \(2\)\.png"):
        extractor.transform([good, bad])
    assert _entries(cache) == 1  # the good image only; nothing for the failed one


def test_truncated_and_missing_files(tmp_path):
    data = tmp_path / "full.png"
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(data)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(data.read_bytes()[:300])
    extractor = PretrainedFeatureExtractor(cache=False).fit()
    with pytest.raises(ValueError, match=r"sample 1.*cut\.png"):
        extractor.transform([data, truncated])
    with pytest.raises(ValueError, match=r"sample 0.*missing\.png"):
        extractor.transform([tmp_path / "missing.png"])
    with pytest.raises(ValueError, match="empty"):
        extractor.transform([])


# ------------------------------------------------------------- pipelines
def _toy_data():
    """Two visibly different classes: dark and bright noise."""
    dark = RNG.integers(0, 90, size=(10, 32, 32, 3), dtype=np.uint8)
    bright = RNG.integers(160, 256, size=(10, 32, 32, 3), dtype=np.uint8)
    return np.concatenate([dark, bright]), np.array(["dark"] * 10 + ["bright"] * 10)


def test_pipeline_cross_validation_and_grid_search(tmp_path):
    X, y = _toy_data()
    pipe = Pipeline(
        [("features", PretrainedFeatureExtractor(cache=str(tmp_path))), ("clf", LogisticRegression(max_iter=500))]
    )
    assert cross_val_score(pipe, X, y, cv=2).mean() > 0.9
    assert _entries(tmp_path) == 20
    search = GridSearchCV(pipe, {"features__pooling": ["avg", "max"], "clf__C": [0.1, 1.0]}, cv=2).fit(X, y)
    assert search.best_score_ > 0.9
    assert _entries(tmp_path) == 40  # one entry per image and pooling, across folds and candidates


def test_n_jobs_processes_share_the_cache_and_do_not_oversubscribe(tmp_path):
    X, y = _toy_data()
    pipe = Pipeline(
        [("features", PretrainedFeatureExtractor(cache=str(tmp_path))), ("clf", LogisticRegression(max_iter=500))]
    )
    scores = cross_val_score(pipe, X, y, cv=2, n_jobs=2)
    assert scores.mean() > 0.9
    assert _entries(tmp_path) == 20
    threads = joblib.Parallel(n_jobs=2)(joblib.delayed(torch.get_num_threads)() for _ in range(2))
    assert max(threads) * 2 <= max(2, torch.get_num_threads())


def test_concurrent_processes_embed_each_image_once(tmp_path):
    # Both start on a cold cache with 32 images each, 16 of them shared and
    # visited in opposite orders: without claims both would embed those 16.
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    shares = [list(range(32)), list(range(47, 15, -1))]
    workers = [ctx.Process(target=embed_rows, args=(str(tmp_path), rows, barrier, results)) for rows in shares]
    for worker in workers:
        worker.start()
    outputs = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert sum(count for _, count, _ in outputs) == len(SHARED)
    expected = small_extractor(False).transform(SHARED)
    for rows, _, out in outputs:
        np.testing.assert_allclose(out, expected[rows], rtol=1e-5, atol=1e-5)
    assert list(tmp_path.rglob("*.claim")) == []


def test_claim_left_by_a_dead_process_does_not_block(tmp_path):
    extractor = small_extractor(str(tmp_path))
    namespace = resolve_cache(str(tmp_path)).namespace(extractor.fingerprint_)
    claim = claim_of_a_dead_process(namespace, content_key(check_images(SHARED[:1])[0], 0))
    count = count_forward(extractor)
    out = extractor.transform(SHARED[:2])
    assert count[0] == 2 and not claim.exists()
    np.testing.assert_allclose(out, small_extractor(False).transform(SHARED[:2]), rtol=1e-5, atol=1e-5)


def test_failed_batch_releases_its_claims(tmp_path):
    cache_dir = tmp_path / "cache"
    extractor = small_extractor(str(cache_dir))
    broken = tmp_path / "broken.png"
    Image.fromarray(SHARED[3]).save(broken)
    broken.write_bytes(broken.read_bytes()[:200])  # decoding fails, after the claims
    with pytest.raises(ValueError, match=r"3.*broken\.png"):
        extractor.transform([*SHARED[:3], broken])
    assert list(cache_dir.rglob("*.emb")) == [] and list(cache_dir.rglob("*.claim")) == []
    assert list(cache_dir.rglob("fingerprint.json"))  # claims were taken in this namespace


@requires_busi
@pytest.mark.busi
def test_busi_paths_with_spaces_and_parentheses():
    from skorchlite.datasets import load_image_folder

    paths, labels = load_image_folder(BUSI)
    subset = [paths[0], paths[-1]]
    assert " (" in subset[0]
    out = PretrainedFeatureExtractor(cache=False).fit_transform(subset)
    assert out.shape == (2, 1280) and np.isfinite(out).all()


def test_image_size_changes_the_crop_and_the_cache_key(tmp_path, reference):
    small = PretrainedFeatureExtractor(image_size=64, cache=str(tmp_path)).fit()
    assert small.fingerprint_["preprocessing"]["crop_size"] == 64
    assert small.fingerprint_["preprocessing"]["resize_size"] == 73  # 64 * 256 / 224
    out = small.transform(IMAGES)
    assert out.shape == (6, 1280) and not np.allclose(out, reference)


# ------------------------------------------- issue 14.3: several layers
SMALL = IMAGES[:3]
MID, LATE = "_blocks.10.add", "_blocks.14.add"


def _small(layer, cache=False, **params):
    return PretrainedFeatureExtractor(layer=layer, image_size=64, cache=cache, **params)


def test_issue_14_3_a_layer_list_is_the_concatenation_of_single_layers():
    # avg+max: None is the last feature map, pooled both ways, as on its own.
    multi = _small([MID, LATE, None], pooling="avg+max").fit()
    singles = [_small(layer, pooling="avg+max").fit() for layer in (MID, LATE, None)]
    np.testing.assert_allclose(
        multi.transform(SMALL), np.hstack([s.transform(SMALL) for s in singles]), rtol=1e-5, atol=1e-6
    )
    assert multi.layers_ == [MID, LATE, None]
    assert multi.layer_widths_ == [2 * 112, 2 * 192, 2 * 1280]
    assert multi.n_features_out_ == sum(s.n_features_out_ for s in singles)


def test_issue_14_3_the_order_given_is_the_column_order():
    # avg: None in a list is the network's own output, as the default extractor gives it.
    forward, backward = _small([MID, None]).fit(), _small([None, MID]).fit()
    a, b = forward.transform(SMALL), backward.transform(SMALL)
    np.testing.assert_allclose(a, np.hstack([b[:, 1280:], b[:, :1280]]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a[:, 112:], _small(None).fit_transform(SMALL), rtol=1e-5, atol=1e-6)


def test_issue_14_3_feature_names_say_which_layer_each_column_came_from():
    extractor = _small([MID, None]).fit()
    names = extractor.get_feature_names_out()
    assert len(names) == extractor.n_features_out_ == len(set(names)) == 112 + 1280
    assert list(names[:2]) == [f"pretrainedfeatureextractor_{MID}_0", f"pretrainedfeatureextractor_{MID}_1"]
    assert names[111] == f"pretrainedfeatureextractor_{MID}_111"
    assert names[112] == "pretrainedfeatureextractor_penultimate_0" and names[-1].endswith("penultimate_1279")
    # One layer keeps scikit-learn's plain names.
    assert _small(MID).fit().get_feature_names_out()[0] == "pretrainedfeatureextractor0"
    pd = pytest.importorskip("pandas")
    frame = extractor.set_output(transform="pandas").transform(SMALL[:1])
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == list(names)


def test_issue_14_3_shortcuts_resolve_to_stage_outputs_and_are_listed():
    from skorchlite.backbones import get_backbone, list_layers

    backbone = get_backbone("efficientnet_lite0")
    nodes = backbone.layer_names()
    # Stage outputs: the last node inside the last block of each stage group.
    ends = [[n for n in nodes if n.startswith(group[-1] + ".")][-1] for group in backbone.layer_groups[1:-1]]
    assert ends[-3:] == [MID, LATE, "_blocks.15._bn2"]
    shortcuts = backbone.layer_shortcuts()
    # "blocks": the residual additions of the stages from "mid" on; the
    # 320-channel stage is one block that changes width, so none of its own.
    residual = ("_blocks.9.add", MID, "_blocks.12.add", "_blocks.13.add", LATE)
    assert shortcuts == {
        "penultimate": (None,),
        "mid": (MID,),
        "stages": (*ends[-3:], None),
        "blocks": (*residual, None),
    }
    assert list_layers("efficientnet_lite0") == (nodes, shortcuts)
    stages = _small("stages").fit()
    assert stages.layers_ == [*ends[-3:], None] and stages.n_features_out_ == 112 + 192 + 320 + 1280
    assert _small("mid").fit().n_features_out_ == 112
    # Shortcuts expand inside lists; "penultimate" is the default itself.
    assert backbone.resolve_layers(["mid", "_blocks.14", "penultimate"]) == (MID, LATE, None)
    assert _small("penultimate").fit().fingerprint_ == _small(None).fit().fingerprint_


def test_issue_14_3_torchvision_shortcuts_need_no_weights():
    from skorchlite.backbones import list_layers, offline_backbones

    assert "resnet18" not in offline_backbones()  # the architecture alone is built
    nodes, shortcuts = list_layers("resnet18")
    assert shortcuts["mid"] == ("layer3.1.relu_1",) and shortcuts["mid"][0] in nodes
    assert shortcuts["stages"] == ("layer1.1.relu_1", "layer2.1.relu_1", "layer3.1.relu_1", None)
    # A stage container's numbered children are its blocks; the first, which
    # downsamples, is left out.
    assert shortcuts["blocks"] == ("layer3.1.relu_1", None)
    assert list_layers("resnet50")[1]["blocks"] == (*(f"layer3.{i}.relu_2" for i in range(1, 6)), None)
    assert list_layers("convnext_tiny")[1]["blocks"] == (*(f"features.5.{i}.add" for i in range(1, 9)), None)


def test_issue_14_3_cli_lists_nodes_and_shortcuts(capsys):
    from skorchlite import cli

    assert cli.main(["backbones", "--layers", "efficientnet_lite0"]) == 0
    out = capsys.readouterr().out
    assert f"stages       {MID}, {LATE}, _blocks.15._bn2, (penultimate features)" in out
    assert "\n  _blocks.10.add\n" in out and "Nodes (144)" in out
    assert cli.main(["backbones", "--layers", "efficientnet_lite9"]) == 1
    assert "Unknown backbone 'efficientnet_lite9'. Did you mean" in capsys.readouterr().err


@pytest.mark.parametrize(
    "layer, error, message",
    [
        (
            [MID, "_blocks.99"],
            ValueError,
            r"no layer '_blocks.99'. Did you mean '_blocks.9.*Shortcuts: penultimate, mid, "
            r"stages.*layers are listed by",
        ),
        ("stage", ValueError, r"no layer 'stage'. Did you mean 'stages'"),
        ([], ValueError, "empty list"),
        ([MID, "_blocks.10"], ValueError, r"names _blocks.10.add more than once"),
        (["stages", None], ValueError, r"names None \(the penultimate features\) more than once"),
        ([MID, 3], TypeError, r"layer must be None, a node or shortcut name \(str\), or a list of them"),
        ({MID}, TypeError, r"The 'layer' parameter of PretrainedFeatureExtractor must be an instance of 'str'"),
    ],
)
def test_issue_14_3_bad_layer_lists_are_refused_at_fit(layer, error, message):
    with pytest.raises(error, match=message):
        _small(layer).fit()


def test_issue_14_3_fingerprint_records_resolved_nodes_in_order(tmp_path):
    def recorded(layer):
        return _small(layer).fit().fingerprint_["layer"]

    assert recorded(None) is None and recorded([None]) is None
    assert recorded("_blocks.10") == recorded([MID]) == recorded("mid") == MID
    assert recorded([MID, None]) == [MID, None] != recorded([None, MID]) == [None, MID]
    assert recorded("stages") == [MID, LATE, "_blocks.15._bn2", None]
    assert recorded([MID, LATE]) != recorded([MID]) != recorded(None)
    # Different lists never share cached vectors.
    for layer in ([MID, None], [None, MID], [MID]):
        _small(layer, cache=str(tmp_path)).fit_transform(SMALL[:1])
    assert _entries(tmp_path) == 3


def test_issue_14_3_a_redefined_shortcut_never_meets_its_old_vectors(tmp_path, monkeypatch):
    from skorchlite.backbones import layers

    before = _small("mid", cache=str(tmp_path)).fit()
    old = before.transform(SMALL[:1])
    monkeypatch.setitem(layers._MID_STAGE, "efficientnet_lite", -2)  # "mid" now means _blocks.14.add
    after = _small("mid", cache=str(tmp_path)).fit()
    assert after.fingerprint_["layer"] == LATE and after.n_features_out_ == 192
    assert after.transform(SMALL[:1]).shape == (1, 192) and old.shape == (1, 112)
    with pytest.raises(ValueError, match="changed since fit"):
        before.transform(SMALL[:1])


def test_issue_14_3_clone_set_params_and_grid_search_take_lists(tmp_path):
    layer = [MID, None]
    extractor = _small(layer, cache=str(tmp_path))
    copy = clone(extractor)
    assert copy.get_params()["layer"] == layer and copy.layer is not layer  # deep-copied, as sklearn does
    fitted = clone(extractor).fit()
    fitted.set_params(layer=[None, MID])
    with pytest.raises(ValueError, match="changed since fit"):
        fitted.transform(SMALL)
    assert fitted.fit().layers_ == [None, MID]
    X, y = _toy_data()
    pipe = Pipeline([("features", extractor), ("clf", LogisticRegression(max_iter=500))])
    search = GridSearchCV(pipe, {"features__layer": [None, "mid", [MID, None]]}, cv=2).fit(X, y)
    assert search.best_score_ > 0.9 and len(search.cv_results_["params"]) == 3
    assert _entries(tmp_path) == 3 * len(X)  # each image once per layer setting, across folds


def test_issue_14_3_grad_cam_explains_a_multi_layer_pipeline():
    from sklearn.preprocessing import StandardScaler

    from skorchlite.inspect import grad_cam

    X, y = _toy_data()
    for layer, cam_layer in [([MID, None], "_head_act"), ([None, MID], MID)]:
        pipe = Pipeline(
            [("features", _small(layer)), ("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=500))]
        ).fit(X, y)
        result = grad_cam(pipe, list(X[:2]))
        np.testing.assert_allclose(result.predicted_probability, pipe.predict_proba(X[:2]).max(1), rtol=1e-4)
        assert result.layer == cam_layer and result.heatmaps[0].shape == (32, 32)
    # A module name for a node the head reads: one node, tapped once (torchvision
    # would silently return only one of two names for it).
    aliased = grad_cam(pipe, list(X[:1]), layer="_blocks.10")
    np.testing.assert_allclose(aliased.heatmaps[0], result.heatmaps[0], rtol=1e-4, atol=1e-5)


def test_the_fitted_fingerprint_holds_exactly_what_makes_the_vectors():
    """Its JSON names the cache's namespace: a key renamed or added orphans
    every stored entry, so the keys are pinned here."""
    from dataclasses import asdict

    from skorchlite.backbones import get_backbone

    backbone = get_backbone("efficientnet_lite0")
    extractor = PretrainedFeatureExtractor(image_size=40, cache=False).fit()
    assert extractor.fingerprint_ == {
        "backbone": "efficientnet_lite0",
        "weights": backbone.weights.id,
        "weights_sha256": backbone.weights.sha256,
        "preprocessing": asdict(backbone.preprocessing.resized(40)),
        "layer": None,
        "pooling": "avg",
        "tta": None,
        "dtype": "float32",
        "embedding_format": 1,
    }
    assert backbone.fingerprint() == {
        "backbone": "efficientnet_lite0",
        "weights": backbone.weights.id,
        "weights_sha256": backbone.weights.sha256,
        "preprocessing": asdict(backbone.preprocessing),
    }
