"""skorchlite.dask on a real LocalCluster: 2 worker processes x 1 thread, loopback.

One cluster serves the whole module (starting worker processes and importing
torch in them costs seconds). Workers are separate processes, so the
per-test SKORCHLITE_CACHE of conftest does not reach them: every extractor
here names its cache folder.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

distributed = pytest.importorskip(
    "distributed", reason='skorchlite.dask needs the optional extra: pip install "skorchlite[dask]"'
)

import cloudpickle  # noqa: E402 - a dependency of distributed
import joblib  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402

import skorchlite.dask as skdask  # noqa: E402
from skorchlite import FineTuneClassifier, PretrainedFeatureExtractor  # noqa: E402
from skorchlite.cache import EmbeddingCache  # noqa: E402

# Workers cannot import this file (tests/ is not on their path): its helper
# functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

N_IMAGES = 40


@pytest.fixture(scope="module")
def client():
    import dask

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_ARENA_MAX": 1}):  # as docs/scaling.md
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
    client = distributed.Client(cluster)
    client.register_plugin(skdask.TorchThreads())
    # torch and the package load once per worker, here rather than in the first test.
    client.run(importlib.import_module, "skorchlite.extractor")
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """N_IMAGES distinct 32 px PNGs, half dark, half bright."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    out = []
    for i in range(N_IMAGES):
        low = 0 if i % 2 == 0 else 150
        path = folder / f"image ({i}).png"
        Image.fromarray(rng.integers(low, low + 100, (32, 32, 3), dtype=np.uint8)).save(path)
        out.append(str(path))
    return out


@pytest.fixture(scope="module")
def reference(paths):
    """Embeddings of ``paths`` at 64 px in this process, no cache."""
    return PretrainedFeatureExtractor(image_size=64, cache=False).fit_transform(paths)


def small(cache, **params) -> PretrainedFeatureExtractor:
    return PretrainedFeatureExtractor(image_size=64, cache=cache, **params)


# ------------------------------------------------- helpers run on the workers
def _install_counters(set_attr=setattr) -> None:
    """Count the images through every embedding network, and transform calls.

    ``set_attr`` is ``setattr`` on the workers, monkeypatch's in this process.
    """
    import skorchlite.extractor as ext
    import skorchlite.networks as networks

    if hasattr(ext, "_test_counts"):
        return
    counts = {"images": 0, "transforms": 0}
    network, transform = networks.inference_network, ext.PretrainedFeatureExtractor.transform_samples

    def hook(module, inputs, output):
        counts["images"] += inputs[0].shape[0]

    def counted_network(*args):
        module = network(*args)
        if module not in hooked:
            hooked[module] = module.register_forward_hook(hook)
        return module

    def counted_transform(self, *args, **kwargs):
        counts["transforms"] += 1
        return transform(self, *args, **kwargs)

    hooked: dict = {}
    set_attr(ext, "_test_counts", counts)
    set_attr(ext, "_test_hooks", hooked)
    set_attr(networks, "inference_network", counted_network)
    set_attr(ext.PretrainedFeatureExtractor, "transform_samples", counted_transform)


def _counts() -> dict:
    import skorchlite.extractor as ext

    return dict(ext._test_counts)


def _network_cache_info() -> tuple[int, int]:
    import skorchlite.networks as networks

    return networks._NETWORKS.hits, networks._NETWORKS.misses


def _network_cache_clear() -> None:
    import skorchlite.networks as networks

    networks._NETWORKS.clear()


def _torch_threads() -> int:
    import torch

    torch.ones(64, 64) @ torch.ones(64, 64)  # initialises this thread's pool
    return torch.get_num_threads()


def _total(client, function) -> int:
    return sum(client.run(function).values())


# ------------------------------------------------------------------- tests
def test_importing_skorchlite_needs_no_dask():
    code = (
        "import sys; import skorchlite.extractor, skorchlite.finetune; "
        "assert not {'dask', 'distributed'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_the_extra_the_import_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` fail
    monkeypatch.delitem(sys.modules, "skorchlite.dask")
    with pytest.raises(ImportError, match=r'pip install "skorchlite\[dask\]"'):
        importlib.import_module("skorchlite.dask")
    monkeypatch.undo()
    assert importlib.import_module("skorchlite.dask") is skdask


def test_estimators_pickle_small_and_hold_no_network(tmp_path):
    from torch import nn

    extractor = small(tmp_path)
    assert len(pickle.dumps(extractor)) < 1500
    fitted = extractor.fit()
    assert len(pickle.dumps(fitted)) < 3000
    assert not any(isinstance(v, nn.Module) for v in vars(fitted).values())
    assert len(pickle.dumps(FineTuneClassifier(cache=str(tmp_path)))) < 2000


def test_extract_needs_a_client(monkeypatch, paths, tmp_path):
    def no_client():
        raise ValueError("No global client found")

    monkeypatch.setattr(skdask, "get_client", no_client)
    with pytest.raises(ValueError, match="No Dask client: create one first"):
        skdask.extract(paths, small(tmp_path))


def test_extract_checks_its_arguments(client, paths, tmp_path):
    with pytest.raises(TypeError, match="extractor.transform in this process"):
        skdask.extract(np.zeros((2, 8, 8, 3), dtype=np.uint8), small(tmp_path), client)
    with pytest.raises(ValueError, match="sample 1: the path is an empty string"):
        skdask.extract([paths[0], ""], small(tmp_path), client)
    with pytest.raises(
        ValueError, match=r"The 'partition_size' parameter of extract must be an int in the range \[1, inf\)"
    ):
        skdask.extract(paths, small(tmp_path), client, partition_size=0)
    with pytest.raises(
        TypeError, match="The 'extractor' parameter of extract must be an instance of .*PretrainedFeatureExtractor'"
    ):
        skdask.extract(paths, LogisticRegression(), client)


def test_extract_in_order_with_one_network_per_worker(client, paths, reference, tmp_path):
    client.run(_network_cache_clear)
    extractor = small(False)
    embeddings = skdask.extract(paths, extractor, client, partition_size=3)
    assert not hasattr(extractor, "fingerprint_")  # a clone was fitted
    assert embeddings.dtype == np.float32 and embeddings.shape == (N_IMAGES, 1280)
    assert embeddings.chunks[0] == (3,) * 13 + (1,)
    np.testing.assert_allclose(embeddings.compute(), reference, rtol=1e-4, atol=1e-5)
    calls = client.run(_network_cache_info)  # worker -> (hits, misses)
    # 14 tasks, each asked its worker for the network once; each worker built it once at most.
    assert sum(h + m for h, m in calls.values()) == 14
    assert all(misses <= 1 for _, misses in calls.values())


def test_extract_to_shards_and_the_shared_cache(client, paths, reference, tmp_path):
    client.run(_install_counters)
    before = _total(client, lambda: _counts()["images"])
    cache, out = tmp_path / "shared-cache", tmp_path / "embeddings"
    embeddings = skdask.extract(paths, small(cache), client, partition_size=16, output=out)
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "part-00000.npy",
        "part-00001.npy",
        "part-00002.npy",
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(s["start"], s["stop"]) for s in manifest["shards"]] == [(0, 16), (16, 32), (32, 40)]
    assert manifest["n_features"] == 1280 and manifest["fingerprint"]["preprocessing"]["crop_size"] == 64
    first = embeddings.compute()
    np.testing.assert_allclose(first, reference, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.load(out / "part-00001.npy"), first[16:32])
    # Each image went through a network once across the cluster, and is in the shared cache.
    assert _total(client, lambda: _counts()["images"]) - before == N_IMAGES
    assert EmbeddingCache(cache).size()[0] == N_IMAGES
    # Again, into the same folder with other partitions: served by the cache, old shards replaced.
    again = skdask.extract(paths, small(cache), client, partition_size=32, output=out)
    assert _total(client, lambda: _counts()["images"]) - before == N_IMAGES
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "part-00000.npy", "part-00001.npy"]
    np.testing.assert_array_equal(again.compute(), first)
    np.testing.assert_array_equal(skdask.read_shards(out).compute(), first)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds other files"):
        skdask.extract(paths, small(cache), client, output=out)


@pytest.mark.parametrize("output", [False, True], ids=["array", "shards"])
@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_an_unreadable_image_fails_the_job_naming_its_global_index(client, paths, tmp_path, damage, output):
    bad = tmp_path / f"{damage} image.png"
    if damage == "corrupt":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    broken = [*paths[:23], str(bad), *paths[23:]]
    start = time.perf_counter()
    with pytest.raises(ValueError, match=rf"sample 23 \('[^']*{damage} image\.png'\): "):
        if output:
            skdask.extract(broken, small(tmp_path / "cache"), client, partition_size=8, output=tmp_path / "out")
        else:
            embeddings = skdask.extract(broken, small(tmp_path / "cache"), client, partition_size=8)
            client.compute(embeddings).result(timeout=60)  # a hang fails instead of blocking
    assert time.perf_counter() - start < 60
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_killed_worker_is_replaced_and_the_result_is_complete(client, tmp_path):
    # Full-size (224 px) crops, so that the extraction is still running when a worker dies.
    rng = np.random.default_rng(1)
    paths = []
    for i in range(96):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(paths[-1])
    extractor = PretrainedFeatureExtractor(cache=False).fit()
    embeddings = skdask.extract(paths, extractor, client, partition_size=4)
    futures = distributed.futures_of(embeddings)
    distributed.wait(futures, return_when="FIRST_COMPLETED", timeout=120)
    busy = [address for address, keys in client.processing().items() if keys]
    assert busy, "the extraction ended before a worker could be killed"
    pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
    os.kill(pid, signal.SIGKILL)
    result = client.compute(embeddings).result(timeout=240)
    expected = extractor.transform(paths)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)
    assert pid not in client.run(os.getpid).values()  # the nanny started a new process...
    client.wait_for_workers(2, timeout=120)  # ...which joins again, for the tests that follow


def test_torch_threads_follow_the_worker(client):
    def threads_in_tasks() -> set[int]:
        return set(client.gather([client.submit(_torch_threads, pure=False) for _ in range(6)]))

    nthreads = set(client.nthreads().values())
    assert threads_in_tasks() == nthreads == {1}
    client.register_plugin(skdask.TorchThreads(threads=2))  # task threads already ran torch
    try:
        assert threads_in_tasks() == {2}
        assert set(client.run(_torch_threads).values()) == {2}
    finally:
        client.register_plugin(skdask.TorchThreads())
    assert threads_in_tasks() == {1}
    with pytest.raises(
        ValueError, match=r"The 'threads' parameter of TorchThreads must be an int in the range \[1, inf\) or None"
    ):
        skdask.TorchThreads(threads=0)


def _page_faults_of_a_batch() -> int:
    import resource

    import torch

    from skorchlite import PretrainedFeatureExtractor

    network = PretrainedFeatureExtractor(cache=False).fit()._network(torch.device("cpu"))
    batch = torch.rand(8, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    faults = []
    with torch.inference_mode():
        network(batch)  # first batch: the heap grows once
        for _ in range(3):  # fewest of three: another task on the worker may free memory meanwhile
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            network(batch)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return min(faults)


def test_workers_keep_freed_memory_for_the_next_batch(client):
    # Under the nanny's MALLOC_TRIM_THRESHOLD_ every batch's activations
    # would be unmapped and faulted in again (~25,000 faults per batch here).
    faults = client.gather(client.submit(_page_faults_of_a_batch, pure=False))
    assert faults < 2000, faults


def test_grid_search_of_a_pipeline_on_the_cluster(client, paths, tmp_path, monkeypatch):
    cache = tmp_path / "shared-cache"
    y = np.array(["dark", "bright"] * (N_IMAGES // 2))
    client.run(_install_counters)
    # And here, where GridSearchCV refits; undone after the test.
    _install_counters(lambda obj, name, value: monkeypatch.setattr(obj, name, value, raising=False))
    skdask.extract(paths, small(cache), client, partition_size=10).compute()  # warms the shared cache
    images, transforms = (_total(client, lambda k=k: _counts()[k]) for k in ("images", "transforms"))
    local = _counts()["images"]
    pipeline = Pipeline([("features", small(cache)), ("clf", LogisticRegression(max_iter=500))])
    search = GridSearchCV(pipeline, {"clf__C": [0.01, 1.0]}, cv=3, n_jobs=-1)
    with joblib.parallel_config(backend="dask"):
        search.fit(np.array(paths), y)
        on_cluster = cross_val_score(pipeline, np.array(paths), y, cv=3, n_jobs=-1)
    # 12 fits and 6 scorings ran on the workers, and no image was embedded again anywhere.
    assert _total(client, lambda: _counts()["transforms"]) - transforms >= 18
    assert _total(client, lambda: _counts()["images"]) == images
    assert _counts()["images"] == local
    assert EmbeddingCache(cache).size()[0] == N_IMAGES
    assert search.best_score_ > 0.9
    np.testing.assert_allclose(on_cluster, cross_val_score(pipeline, np.array(paths), y, cv=3))
    import skorchlite.extractor as ext

    for handle in ext._test_hooks.values():  # the cached network outlives this test
        handle.remove()


def test_grid_search_of_the_fine_tuner_on_the_cluster(client, tmp_path):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.integers(0, 80, (8, 32, 32, 3)), rng.integers(170, 256, (8, 32, 32, 3))]).astype(np.uint8)
    y = np.array(["dark"] * 8 + ["bright"] * 8)
    clf = FineTuneClassifier(
        epochs=1,
        image_size=40,
        batch_size=8,
        validation_fraction=0,
        augment=None,
        device="cpu",
        cache=str(tmp_path / "shared-cache"),
        random_state=0,
    )
    search = GridSearchCV(clf, {"unfreeze": [0, 1]}, cv=2, n_jobs=-1)
    with joblib.parallel_config(backend="dask"):
        search.fit(X, y)
    assert search.best_params_["unfreeze"] in (0, 1)
    assert set(search.predict(X)) <= {"dark", "bright"}
    # Head-only candidates embedded through the shared cache, from the workers: the penultimate
    # features the head trains on, and the "blocks" layers its voting heads read.
    assert EmbeddingCache(tmp_path / "shared-cache").size()[0] == 2 * len(X)
