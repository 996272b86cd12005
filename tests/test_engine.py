"""The engine: one path for every network pass, identical tensors for identical settings."""

from __future__ import annotations

import dataclasses
import os
import threading
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from skorchlite import FineTuneClassifier, PretrainedFeatureExtractor, engine
from skorchlite.backbones import get_backbone
from skorchlite.engine import (
    check_precision,
    crop_pixels,
    embed,
    inference_network,
    prepared_batches,
    to_input,
)
from skorchlite.finetune import inputs as finetune_inputs
from skorchlite.finetune.augmentation import default_augmentation
from skorchlite.finetune.inputs import ImageStore
from skorchlite.images import check_images, content_key, load_rgb
from skorchlite.inspect import resolve_model

RNG = np.random.default_rng(0)
X = RNG.integers(0, 256, (10, 48, 40, 3), dtype=np.uint8)
PRE = get_backbone("efficientnet_lite0").preprocessing.resized(64)


def _paths(tmp_path, n=6):
    paths = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(X[i]).save(path)
        paths.append(str(path))
    return paths


def test_preprocessing_is_bit_identical_to_torchvisions_preset():
    images = [load_rgb(x, i) for i, x in enumerate(X)]
    for pre in (PRE, get_backbone("efficientnet_lite0").preprocessing):
        preset = pre.transform()
        expected = torch.stack([preset(image) for image in images])
        got = to_input([crop_pixels(image, pre) for image in images], pre, torch.device("cpu"))
        assert got.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        unnormalised = to_input(
            [crop_pixels(image, pre) for image in images], pre, torch.device("cpu"), normalize=False
        )
        torch.testing.assert_close(
            unnormalised, torch.stack([pre.transform(normalize=False)(i) for i in images]), rtol=0, atol=0
        )


def test_a_bicubic_preprocessing_is_honoured_by_both_resizes():
    """timm's presets and several torchvision weights resize bicubic: the
    interpolation must reach the short-side resize and the squash alike, with
    no warning (antialias=False on a PIL image warns and is ignored)."""
    pre = dataclasses.replace(PRE, interpolation="bicubic")
    images = [load_rgb(x, i) for i, x in enumerate(X)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = to_input([crop_pixels(image, pre) for image in images], pre, torch.device("cpu"))
        squashed = [crop_pixels(image, pre, squash=True) for image in images]
    torch.testing.assert_close(got, torch.stack([pre.transform()(i) for i in images]), rtol=0, atol=0)
    side = (pre.crop_size, pre.crop_size)
    for image, pixels in zip(images, squashed, strict=True):
        np.testing.assert_array_equal(pixels, np.asarray(image.resize(side, Image.Resampling.BICUBIC)))
        assert not np.array_equal(pixels, np.asarray(image.resize(side, Image.Resampling.BILINEAR)))


def test_inputs_stay_float32_under_a_float64_default_dtype():
    """A user's torch.set_default_dtype(torch.float64) must not turn the
    batch into float64, which the float32 weights would refuse."""
    pre = get_backbone("efficientnet_lite0").preprocessing
    crops = [crop_pixels(load_rgb(x, i), pre) for i, x in enumerate(X)]
    expected = to_input(crops, pre, torch.device("cpu"))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = to_input(crops, pre, torch.device("cpu"))
    finally:
        torch.set_default_dtype(default)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_forward_without_mirror_is_the_network_alone():
    x = torch.arange(8.0).view(2, 1, 1, 4)
    torch.testing.assert_close(engine.forward(lambda t: t[..., 0], x), x[..., 0], rtol=0, atol=0)


def test_the_three_callers_get_identical_tensors_for_identical_settings(monkeypatch):
    """Extractor, fine-tuner and inspection all feed the network what the engine makes."""
    seen: dict[str, torch.Tensor] = {}
    real = engine.to_input

    def spy(pixels, preprocessing, device, *, normalize=True):
        out = real(pixels, preprocessing, device, normalize=normalize)
        seen.setdefault(
            caller[0],
            out
            if normalize
            else (out - torch.tensor(preprocessing.mean).view(1, -1, 1, 1))
            / torch.tensor(preprocessing.std).view(1, -1, 1, 1),
        )
        return out

    monkeypatch.setattr(engine, "to_input", spy)
    monkeypatch.setattr("skorchlite.inspect.explainable.to_input", spy)
    monkeypatch.setattr(finetune_inputs, "to_input", spy)
    caller = ["extractor"]
    PretrainedFeatureExtractor(image_size=64, batch_size=10, cache=False).fit().transform(X)
    caller[0] = "fine-tuner"
    clf = FineTuneClassifier(
        unfreeze=1,
        freeze_epochs=0,
        epochs=1,
        augment=None,
        image_size=64,
        batch_size=10,
        validation_fraction=0,
        cache=False,
        random_state=0,
    ).fit(X, [0, 1] * 5)
    seen.pop("fine-tuner")  # training rows come shuffled: compare prediction's batch
    clf.predict_proba(X)
    caller[0] = "inspect"
    resolve_model(clf).load(check_images(X), torch.device("cpu"))
    assert set(seen) == {"extractor", "fine-tuner", "inspect"}
    torch.testing.assert_close(seen["fine-tuner"], seen["extractor"], rtol=0, atol=0)
    torch.testing.assert_close(seen["inspect"], seen["extractor"], rtol=1e-6, atol=1e-6)  # (x*std+mean) round trip


@pytest.mark.parametrize("batch_size", [1, 3, 10])
def test_embed_keeps_order_and_does_not_depend_on_batch_size_or_threads(batch_size):
    network = inference_network(get_backbone("efficientnet_lite0"), None, "avg", torch.device("cpu"))
    samples = check_images(X)
    rows = [7, 2, 9, 0, 5]

    def run(size, workers):
        out = list(
            embed(network, samples, iter(rows), PRE, batch_size=size, device=torch.device("cpu"), workers=workers)
        )
        got_rows = [r for batch_rows, _, _ in out for r in batch_rows]
        keys = [k for _, batch_keys, _ in out for k in batch_keys]
        return got_rows, keys, np.concatenate([v for _, _, v in out])

    reference_rows, keys, reference = run(len(rows), 1)
    assert reference_rows == rows and keys == [content_key(samples[r], r) for r in rows]
    got_rows, _, got = run(batch_size, 2)
    assert got_rows == rows
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4)  # one-image batches may pick other kernels


def test_prepared_batches_name_the_sample_index_of_the_whole_x(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    samples = check_images([str(bad)])
    with pytest.raises(ValueError, match=r"sample 40 .*broken.png"):
        list(prepared_batches(samples, [0], PRE, batch_size=1, workers=1, first_index=40))


def test_a_file_replaced_during_transform_is_stored_under_its_new_contents_key(tmp_path, monkeypatch):
    """Decode once: the key stored with a vector comes from the bytes that were embedded."""
    paths = _paths(tmp_path, 2)
    extractor = PretrainedFeatureExtractor(image_size=64, cache=tmp_path / "cache").fit()
    real = engine.load_keyed
    replaced = threading.Event()

    def replace_then_load(sample, index):
        if index == 0 and not replaced.is_set():  # after transform keyed it, before it is decoded
            Image.fromarray(X[5]).save(paths[0])
            replaced.set()
        return real(sample, index)

    monkeypatch.setattr(engine, "load_keyed", replace_then_load)
    first = extractor.transform(paths)
    monkeypatch.setattr(engine, "load_keyed", real)
    fresh = PretrainedFeatureExtractor(image_size=64, cache=False).fit()
    np.testing.assert_allclose(first[0], fresh.transform([X[5]])[0], atol=1e-5)  # the row is what the file now holds
    # The original content's key holds nothing: writing the new image there would poison it for good.
    original = tmp_path / "original.png"
    Image.fromarray(X[0]).save(original)
    again = extractor.transform([str(original), paths[0]])
    np.testing.assert_allclose(again[0], fresh.transform([X[0]])[0], atol=1e-5)
    np.testing.assert_allclose(again[1], first[0], atol=1e-5)


def test_a_replaced_representative_does_not_stand_for_its_unchanged_duplicates(tmp_path, monkeypatch):
    paths = _paths(tmp_path, 1)
    copy = tmp_path / "copy.png"
    copy.write_bytes(open(paths[0], "rb").read())
    extractor = PretrainedFeatureExtractor(image_size=64, cache=False).fit()
    real = engine.load_keyed

    def replace_then_load(sample, index):
        if index == 0 and not getattr(replace_then_load, "done", False):
            Image.fromarray(X[5]).save(paths[0])
            replace_then_load.done = True
        return real(sample, index)

    monkeypatch.setattr(engine, "load_keyed", replace_then_load)
    out = extractor.transform([paths[0], str(copy)])
    reference = extractor.transform([X[5], X[0]])
    np.testing.assert_allclose(out, reference, atol=1e-5)


def test_bfloat16_is_refused_where_the_hardware_lacks_it(monkeypatch):
    monkeypatch.setattr(engine, "native_bfloat16", lambda device: False)
    with pytest.raises(ValueError, match="native bfloat16.*precision='float32'"):
        check_precision("bfloat16", torch.device("cpu"))
    for estimator in (PretrainedFeatureExtractor(precision="bfloat16"), FineTuneClassifier(precision="bfloat16")):
        with pytest.raises(ValueError, match="bfloat16"):
            estimator.fit(X[:4], [0, 1, 0, 1])


@pytest.mark.skipif(not engine.native_bfloat16(torch.device("cpu")), reason="this CPU has no native bfloat16")
def test_bfloat16_embeddings_stay_close_to_float32_and_are_cached_apart(tmp_path):
    cache = tmp_path / "cache"
    fp32 = PretrainedFeatureExtractor(image_size=64, cache=cache).fit()
    bf16 = PretrainedFeatureExtractor(image_size=64, cache=cache, precision="bfloat16").fit()
    assert fp32.fingerprint_ != bf16.fingerprint_ and bf16.fingerprint_["dtype"] == "bfloat16"
    a, b = fp32.transform(X), bf16.transform(X)
    assert a.dtype == b.dtype == np.float32 and not np.array_equal(a, b)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.98, cosine


def test_default_augmentation_is_reproducible_across_worker_counts():
    store_rows = list(range(len(X)))
    augment = default_augmentation(PRE)
    seeds = [int(s) for s in np.random.default_rng(1).integers(0, 2**62, len(X))]

    def batches(workers):
        store = ImageStore(check_images(X), PRE, workers=workers)
        return torch.cat(
            [x for _, x in store.batches(store_rows, 4, torch.device("cpu"), augment=augment, seeds=seeds)]
        )

    one = batches(1)
    torch.testing.assert_close(batches(2), one, rtol=0, atol=0)
    torch.testing.assert_close(batches(os.cpu_count() or 2), one, rtol=0, atol=0)
    assert not torch.equal(one, batches(1)[torch.arange(len(X)).roll(1)])


def test_fine_tuning_with_default_augmentation_repeats_across_num_workers():
    params = dict(
        unfreeze=1,
        freeze_epochs=0,
        epochs=1,
        image_size=64,
        batch_size=5,
        validation_fraction=0,
        cache=False,
        random_state=0,
    )
    y = [0, 1] * 5
    one = FineTuneClassifier(num_workers=1, **params).fit(X, y).predict_proba(X)
    two = FineTuneClassifier(num_workers=3, **params).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(one, two)


def test_the_image_store_keeps_decoded_images_within_its_bound(monkeypatch):
    samples = check_images(X)
    store = ImageStore(samples, PRE, workers=1, max_bytes=3 * 73 * 87 * 3)  # room for three resized images
    loads = []
    real = finetune_inputs.load_rgb
    monkeypatch.setattr(finetune_inputs, "load_rgb", lambda s, i: loads.append(i) or real(s, i))
    for _ in range(2):
        for _ in store.batches(list(range(len(X))), 5, torch.device("cpu")):
            pass
    assert len(store._kept) == 3 and store._bytes <= store.max_bytes
    assert len(loads) == len(X) + len(X) - 3  # the kept three are decoded once


def test_compile_trains_through_torch_compile(monkeypatch):
    compiled = []

    def fake_compile(model):  # the real one takes ~40 s on 2 cores: the benchmark measures it
        compiled.append(model)
        return lambda x: model(x)

    monkeypatch.setattr(torch, "compile", fake_compile)
    params = dict(
        unfreeze=1,
        freeze_epochs=1,
        epochs=2,
        augment=None,
        image_size=64,
        batch_size=5,
        validation_fraction=0,
        cache=False,
        random_state=0,
    )
    clf = FineTuneClassifier(compile=True, **params).fit(X, [0, 1] * 5)
    assert len(compiled) == 1  # the training view of clf.model_, which shares its parameters
    assert {id(p) for p in compiled[0].parameters()} == {id(p) for p in clf.model_.parameters()}
    np.testing.assert_allclose(
        clf.predict_proba(X), FineTuneClassifier(**params).fit(X, [0, 1] * 5).predict_proba(X), atol=1e-5
    )
    with pytest.raises(ValueError, match="The 'compile' parameter of FineTuneClassifier must be an instance of 'bool'"):
        FineTuneClassifier(compile="yes").fit(X, [0, 1] * 5)
