"""Conventions users expect (issue 27, point 5): --version, global options
on either side of the verb, evaluate's engine options, embed's column
names, the cache folder from platformdirs, skorchlite cache info|prune,
progress bars in Jupyter."""

from __future__ import annotations

import csv
import json
import os
import sys
import threading
import time
import types

import numpy as np
import pytest
from cli_helpers import image_folder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skorchlite
from skorchlite import PretrainedFeatureExtractor
from skorchlite.cache import EmbeddingCache, default_cache_dir
from skorchlite.cli import build_parser, main
from skorchlite.cli.cache import parse_age, parse_size
from skorchlite.progress import progress_bar

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def folder(tmp_path):
    return image_folder(tmp_path / "images", {"dark": 4, "bright": 4})


# --- the program -----------------------------------------------------------------


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"skorchlite {skorchlite.__version__}"


VERBS = [["backbones"], ["cache", "info"], ["embed", "d", "-o", "x.npy"], ["evaluate"], ["predict", "m", "i"]]


@given(
    verb=st.sampled_from(VERBS),
    verbose=st.sampled_from([None, 0, 1, 2]),
    debug=st.booleans(),
    before=st.lists(st.booleans(), min_size=2, max_size=2),
)
def test_global_options_go_before_or_after_the_verb(verb, verbose, debug, before):
    head, tail = [], []
    if verbose is not None:
        (head if before[0] else tail).extend(["--verbose", str(verbose)])
    if debug:
        (head if before[1] else tail).append("--debug")
    args = build_parser().parse_args([*head, *verb, *tail])
    assert args.verbose == (1 if verbose is None else verbose)
    assert args.debug is debug


def test_finetune_defaults_are_the_estimators():
    """The recipe ``skorchlite finetune DIR -o M`` trains is ``FineTuneClassifier()``'s."""
    args = build_parser().parse_args(["finetune", "d", "-o", "m.skorchlite"])
    defaults = skorchlite.FineTuneClassifier().get_params()
    shared = ["backbone", "weights", "unfreeze", "epochs", "freeze_epochs", "lr", "image_size"]
    shared += ["validation_fraction", "n_iter_no_change", "batch_size", "precision", "tta"]
    assert {name: getattr(args, name) for name in shared} == {name: defaults[name] for name in shared}


# --- evaluate's and embed's engine options -----------------------------------------


def _fingerprints(root):
    return [json.loads(path.read_text()) for path in sorted(root.glob("*/fingerprint.json"))]


def test_evaluate_takes_device_batch_size_precision_tta_and_cache(folder, tmp_path, _isolated_cache):
    chosen = tmp_path / "chosen-cache"
    args = ["evaluate", str(folder), "--cv", "2", "--image-size", "64", "--verbose", "0"]
    options = ["--device", "cpu", "--batch-size", "3", "--precision", "float32", "--tta", "--cache", str(chosen)]
    assert main([*args, *options]) == 0
    assert [fp["tta"] for fp in _fingerprints(chosen)] == ["mirror"]
    assert EmbeddingCache(chosen).size()[0] == 8
    assert not _isolated_cache.exists()  # the default cache untouched
    assert main([*args, "--no-cache"]) == 0
    assert not _isolated_cache.exists()


@pytest.mark.parametrize(
    ("option", "named"),
    [(["--precision", "float16"], "'precision'"), (["--device", "tpu9"], "device='tpu9'")],
)
def test_a_bad_engine_option_fails_in_one_line_before_any_image(folder, capsys, option, named):
    assert main(["evaluate", str(folder), "--cv", "2", "--verbose", "0", *option]) == 1
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1, err


def test_a_cache_inside_the_image_folder_is_refused(folder, capsys):
    assert main(["evaluate", str(folder), "--cache", str(folder / "dark" / "cache")]) == 1
    assert "--cache" in capsys.readouterr().err


@pytest.mark.parametrize("layer", [[], ["--layer", "mid", "penultimate"]])
def test_embed_names_its_columns_as_get_feature_names_out(folder, tmp_path, layer):
    table = tmp_path / "features.csv"
    assert main(["embed", str(folder), "-o", str(table), "--image-size", "64", "--verbose", "0", *layer]) == 0
    header = next(csv.reader(open(table)))
    extractor = PretrainedFeatureExtractor(layer=["mid", None] if layer else None, image_size=64).fit()
    assert header == ["path", "label", *extractor.get_feature_names_out()]


# --- the cache folder and skorchlite cache ------------------------------------------


def test_the_default_cache_folder_is_platformdirs_user_cache_dir(monkeypatch):
    import platformdirs

    monkeypatch.delenv("SKORCHLITE_CACHE")
    asked = []
    mac = "/Users/ada/Library/Caches/skorchlite"
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda *a, **k: asked.append((a, k)) or mac)
    assert str(default_cache_dir()) == mac and asked[0][0] == ("skorchlite",)
    monkeypatch.setenv("SKORCHLITE_CACHE", "/elsewhere")
    assert str(default_cache_dir()) == "/elsewhere"


def _fill(cache: EmbeddingCache, ages: list[float], dim: int = 4) -> list[str]:
    """One entry per age (seconds since its last use), keys in that order."""
    namespace = cache.namespace({"backbone": "test"})
    now, keys = time.time(), []
    for i, age in enumerate(ages):
        key = f"{i:064x}"
        namespace.put(key, np.full(dim, i, dtype=np.float32))
        os.utime(namespace._entry(key), (now - age, now - age))
        keys.append(key)
    return keys


def _kept(cache: EmbeddingCache, keys: list[str]) -> list[int]:
    """Which entries are left; without reading them, which would make them used."""
    namespace = cache.namespace({"backbone": "test"})
    return [i for i, key in enumerate(keys) if namespace._entry(key).exists()]


@FAST
@given(
    ages=st.lists(st.floats(0, 1e7), min_size=1, max_size=12),
    max_size=st.one_of(st.none(), st.integers(0, 600)),
    older_than=st.one_of(st.none(), st.floats(0, 2e7)),
)
def test_prune_keeps_the_most_recently_used_within_the_limits(tmp_path_factory, ages, max_size, older_than):
    if max_size is None and older_than is None:
        max_size = 0
    cache = EmbeddingCache(tmp_path_factory.mktemp("cache"))
    keys = _fill(cache, ages)
    removed, freed = cache.prune(max_size=max_size, older_than=older_than)
    kept = _kept(cache, keys)
    count, total = cache.size()
    assert count == len(kept) == len(keys) - removed and freed == removed * 44
    if max_size is not None:
        assert total <= max_size
    if older_than is not None:
        assert all(ages[i] <= older_than + 1 for i in kept)
    gone = set(range(len(keys))) - set(kept)
    # The least recently used went first (ages within a millisecond are one
    # age: the file system keeps times to its own resolution).
    assert all(ages[k] <= ages[g] + 1e-3 for k in kept for g in gone)


def test_prune_leaves_claims_and_foreign_files(tmp_path):
    cache = EmbeddingCache(tmp_path)
    keys = _fill(cache, [10, 20])
    namespace = cache.namespace({"backbone": "test"})
    claim = namespace._claim_file("00" * 31 + "ff")  # in the entries' folder
    claim.write_text("host 1 1\n")
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    assert cache.prune(max_size=0) == (2, 88)
    assert claim.exists() and other.exists() and (namespace.path / "fingerprint.json").exists()
    assert _kept(cache, keys) == []


def test_prune_while_others_read_never_gives_a_wrong_vector(tmp_path):
    cache = EmbeddingCache(tmp_path)
    keys = _fill(cache, [float(i) for i in range(300)], dim=64)
    namespace = cache.namespace({"backbone": "test"})
    wrong, errors, stop = [], [], threading.Event()

    def read():
        try:
            while not stop.is_set():
                for i, key in enumerate(keys):
                    vector = namespace.get(key, dim=64)
                    if vector is not None and not np.array_equal(vector, np.full(64, i, dtype=np.float32)):
                        wrong.append(i)
        except Exception as err:  # noqa: BLE001  # any error fails the test below
            errors.append(err)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    removed, _ = cache.prune(max_size=0)
    stop.set()
    for thread in readers:
        thread.join()
    assert removed == 300 and not wrong and not errors


def test_cache_info_and_prune_from_the_command_line(tmp_path, capsys):
    cache = EmbeddingCache(tmp_path / "c")
    keys = _fill(cache, [100 * 86400, 60, 30])
    assert main(["cache", "info", "--cache", str(cache.root)]) == 0
    out = capsys.readouterr().out
    assert f"Folder: {cache.root} (--cache)" in out and "Models: 1" in out and "Entries: 3 (132 B)" in out
    assert main(["cache", "prune", "--older-than", "30d", "--cache", str(cache.root)]) == 0
    assert "Removed 1 entry (44 B)" in capsys.readouterr().out
    assert _kept(cache, keys) == [1, 2]
    assert main(["cache", "prune", "--max-size", "50", "--cache", str(cache.root)]) == 0
    assert _kept(cache, keys) == [2]
    assert main(["cache", "prune", "--cache", str(cache.root)]) == 1
    assert "--max-size SIZE or --older-than AGE" in capsys.readouterr().err


def test_cache_info_names_the_default_folder_and_what_set_it(capsys, _isolated_cache):
    assert main(["cache", "info"]) == 0
    assert f"Folder: {_isolated_cache} (set by SKORCHLITE_CACHE)" in capsys.readouterr().out


UNITS = {"": 1, "K": 1024, "MB": 1024**2, "GiB": 1024**3, "t": 1024**4}


@given(n=st.integers(0, 10**6), unit=st.sampled_from(sorted(UNITS)), space=st.sampled_from(["", " "]))
def test_sizes_read_as_du_writes_them(n, unit, space):
    assert parse_size(f"{n}{space}{unit}") == n * UNITS[unit]


AGES = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@given(n=st.integers(0, 10**6), unit=st.sampled_from(sorted(AGES)))
def test_ages_read_with_their_unit(n, unit):
    assert parse_age(f"{n}{unit}") == n * AGES[unit]


@pytest.mark.parametrize("text", ["", "-1G", "1X", "G", "1e400", "nan", "1.2.3M"])
def test_a_bad_size_or_age_is_refused_by_the_parser(text, capsys):
    for option in ("--max-size", "--older-than"):
        with pytest.raises(SystemExit) as info:
            main(["cache", "prune", f"{option}={text}"])
        assert info.value.code == 2
    assert "expected a" in capsys.readouterr().err


# --- progress bars -------------------------------------------------------------


def test_verbose_1_shows_the_bar_in_a_jupyter_kernel(monkeypatch):
    assert not sys.stderr.isatty()
    assert progress_bar(10, verbose=1, desc="x").disable  # a log file: no bar
    shell = types.SimpleNamespace(config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    bar = progress_bar(10, verbose=1, desc="x")
    assert not bar.disable
    bar.close()
    assert progress_bar(10, verbose=0, desc="x").disable
