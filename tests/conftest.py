"""Shared fixtures: an isolated cache per test, real photographs, BUSI."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BUSI = Path(__file__).resolve().parents[2] / "shared" / "data" / "busi"
requires_busi = pytest.mark.skipif(not BUSI.is_dir(), reason=f"BUSI not found at {BUSI}")


def _package_data(package: str, *parts: str) -> Path:
    # Located without importing the package: scikit-image is slow to import.
    spec = importlib.util.find_spec(package)
    return Path(spec.submodule_search_locations[0], *parts)


# Real photographs shipped inside installed packages, with the ImageNet
# classes a correct network ranks first.
PHOTOS = {
    "chelsea": (_package_data("skimage", "data", "chelsea.png"), {"Egyptian cat", "tabby", "tiger cat"}),
    "coffee": (_package_data("skimage", "data", "coffee.png"), {"espresso", "cup"}),
    "motorcycle": (_package_data("skimage", "data", "motorcycle_left.png"), {"moped", "motor scooter"}),
    "china": (_package_data("sklearn", "datasets", "images", "china.jpg"), {"palace", "monastery", "bell cote"}),
}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own embedding cache and torch hub directory."""
    monkeypatch.setenv("SKORCHLITE_CACHE", str(tmp_path / "skorchlite-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "skorchlite-cache"


@pytest.fixture(scope="module")
def inspect_draws():
    """Restart inspect_helpers.RNG for each tests/test_inspect_*.py file that draws from it."""
    from inspect_helpers import restart_draws

    restart_draws()


@pytest.fixture(scope="session")
def patch_clf():
    """Head-only FineTuneClassifier at 224 px: is there a bright square?

    For the tests of skorchlite.inspect (tests/test_inspect_*.py), trained
    once for all of them; imported here, not above, so that other tests do
    not load torch for it."""
    import numpy as np
    from inspect_helpers import training_set

    from skorchlite import FineTuneClassifier

    X, y = training_set(np.random.default_rng(0))
    clf = FineTuneClassifier(
        unfreeze=0, augment=None, epochs=15, lr=1e-2, batch_size=8, validation_fraction=0, random_state=0, cache=False
    )
    return clf.fit(X, y)
