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
