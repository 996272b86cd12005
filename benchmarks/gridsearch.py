"""What the embedding cache saves in a grid search on BUSI, on the CPU.

GridSearchCV(cv=5) over 6 values of LogisticRegression's C (np.logspace(-3, 2,
6), max_iter=2000) on Pipeline(PretrainedFeatureExtractor, LogisticRegression),
run (1) with ``cache=<fresh temporary dir>`` and (2) with ``cache=False``.
Prints the wall time of each and

- the speedup (2)/(1), target >= 10;
- the images that went through the network in (1), counted by a forward hook
  on the extractor's network: target = the number of distinct images (by
  content hash), i.e. each image embedded once over 30 fits and the refit;
- (3) the same search of LogisticRegression alone on the embeddings (read back
  from the cache of (1)): what is left of (1) once nothing is embedded, so
  (2)/(3) bounds the speedup a cache can give.

The model is loaded before either run. n_jobs=1, so that every forward pass
happens in this process, where the hook sees it. Both runs must choose the
same C with the same scores (so must (3)): the cache changes the time, not
the results.

numpy's and scipy's BLAS (OpenBLAS, which LogisticRegression's lbfgs
solver calls) run with ``--blas-threads`` threads during the searches,
default 1; torch's threads (MKL and OpenMP, the forward passes) stay as
they are. On a 780 x 1280 problem the solver's BLAS calls are small, and
where BLAS threads cost more than they give, the identical classifier fits
of (1) and (2) would measure thread hand-offs instead of the cache. So
that the choice is seen, not assumed, (3) is also timed with BLAS's
default threads, and ``--blas-threads 0`` keeps that default for all runs.

(2) embeds every image about 31 times (5 folds x 6 candidates, train + test,
plus the refit): ``--limit N`` keeps a stratified subset of N images, and
``--quick`` is ``--limit 150``.

Run: ``python benchmarks/gridsearch.py [--limit N | --quick] [--blas-threads K]``.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch
from _common import busi_arguments, load_busi, machine, verdict
from threadpoolctl import threadpool_info, threadpool_limits

GRID = {"clf__C": np.logspace(-3, 2, 6)}
FOLDS = 5


class ForwardCounter:
    """A forward hook that counts the images through a network."""

    def __init__(self):
        self.images = 0

    def __call__(self, module, inputs, output):
        self.images += inputs[0].shape[0]


def timed_search(estimator, grid: dict, X: np.ndarray, y: np.ndarray) -> tuple[float, object]:
    """Wall seconds and the fitted GridSearchCV."""
    from sklearn.model_selection import GridSearchCV

    search = GridSearchCV(estimator, grid, cv=FOLDS, n_jobs=1)
    start = time.perf_counter()
    search.fit(X, y)
    return time.perf_counter() - start, search


def search_embeddings(embeddings: np.ndarray, y: np.ndarray) -> tuple[float, object]:
    """(3): the same search of LogisticRegression alone, on embeddings."""
    from sklearn.linear_model import LogisticRegression

    return timed_search(LogisticRegression(max_iter=2000), {"C": GRID["clf__C"]}, embeddings, y)


def pipeline(cache):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from skorchlite import PretrainedFeatureExtractor

    return Pipeline(
        [
            ("features", PretrainedFeatureExtractor(device="cpu", cache=cache)),
            ("clf", LogisticRegression(max_iter=2000)),
        ]
    )


def main() -> int:
    parser = busi_arguments(__doc__, quick=150)
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="numpy/scipy BLAS threads during the searches; 0: their default (default: %(default)s)",
    )
    args = parser.parse_args()

    from skorchlite import PretrainedFeatureExtractor
    from skorchlite.images import check_images, content_key

    X, y = load_busi(args.data, args.limit)
    # Also reads and hashes every file once (the process keeps the hashes), so
    # that the two runs start alike: neither pays for a cold page cache.
    distinct = len({content_key(s, i) for i, s in enumerate(check_images(X))})
    classes = ", ".join(f"{c} {k}" for c, k in zip(*np.unique(y, return_counts=True), strict=True))
    print(f"machine: {machine()}")
    print(f"BUSI: N = {len(y)} images ({distinct} distinct; {classes})")
    print(f"GridSearchCV(cv={FOLDS}, n_jobs=1), C in {np.round(GRID['clf__C'], 3).tolist()}, efficientnet_lite0, CPU")

    # The network the extractor fetches from skorchlite.extractor._network (one
    # per process); fetching it here also loads the model before the runs.
    network = PretrainedFeatureExtractor(device="cpu", cache=False).fit()._network(torch.device("cpu"))
    counter = ForwardCounter()
    network.register_forward_hook(counter)

    default_blas = max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")
    blas = args.blas_threads or default_blas
    print(
        f"BLAS threads (numpy, scipy) during the searches: {blas} (their default: {default_blas}); "
        f"torch threads: {torch.get_num_threads()}"
    )
    with threadpool_limits(blas, user_api="blas"):
        with tempfile.TemporaryDirectory() as cache_dir:
            seconds_cached, cached = timed_search(pipeline(cache_dir), GRID, X, y)
            passes_cached, counter.images = counter.images, 0
            # Read back from the cache for (3); no image goes through the network.
            embeddings = PretrainedFeatureExtractor(device="cpu", cache=cache_dir).fit().transform(X)
        seconds_uncached, uncached = timed_search(pipeline(False), GRID, X, y)
        passes_uncached = counter.images
        seconds_floor, floor = search_embeddings(embeddings, y)
    seconds_default, _ = search_embeddings(embeddings, y)

    print(f"\n{'run':52} {'wall s':>8} {'images through network':>23}")
    print(f"{'(1) cache=<fresh tmp dir>':52} {seconds_cached:8.1f} {passes_cached:23d}")
    print(f"{'(2) cache=False':52} {seconds_uncached:8.1f} {passes_uncached:23d}")
    print(f"{'(3) LogisticRegression alone on the embeddings of (1)':52} {seconds_floor:8.1f} {0:23d}")
    print(f"{f'    the same with BLAS default threads ({default_blas})':52} {seconds_default:8.1f} {0:23d}")
    speedup = seconds_uncached / seconds_cached
    print(
        f"\nspeedup (2)/(1): {speedup:.1f}x (target >= 10): {verdict(speedup >= 10)}; "
        f"at most (2)/(3) = {seconds_uncached / seconds_floor:.1f}x with (1) as fast as its classifier"
    )
    print(
        f"images through the network in (1): {passes_cached}, distinct images: {distinct}: "
        f"{verdict(passes_cached == distinct)}"
    )
    searches = (cached, uncached, floor)
    scores = [search.cv_results_["mean_test_score"] for search in searches]
    same = len({search.best_index_ for search in searches}) == 1 and all(np.allclose(scores[0], s) for s in scores)
    best_c = ", ".join(f"{GRID['clf__C'][search.best_index_]:g}" for search in searches)
    best_accuracy = ", ".join(f"{search.best_score_:.4f}" for search in searches)
    print(f"same results in (1), (2), (3): best C {best_c}, best accuracy {best_accuracy}: {verdict(same)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
