"""Fine-tuning is one package (issue 25): one node of the import graph,
built on by the command line, the report, inspect and strategies, never
building on them; modules of one job each, none over 500 lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from import_graph import graph

import skorchlite.finetune

PACKAGE = Path(skorchlite.finetune.__file__).parent
OLD_TOWER = ("fitting", "trainer", "training", "inputs", "targets")


def test_fine_tuning_builds_on_none_of_its_callers():
    assert graph()["finetune"].isdisjoint({"cli", "report", "report_page", "inspect", "strategies"})


def test_the_old_tower_of_single_files_is_gone():
    assert not set(OLD_TOWER) & set(graph())


def test_the_engine_no_longer_holds_fine_tuning_inputs():
    assert "finetune" not in graph()["engine"]
    from skorchlite import engine

    assert not hasattr(engine, "ImageStore")


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_each_module_stays_small(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) < 500


def test_a_pickle_names_the_estimator_by_its_public_path():
    """Moving the estimator between the package's modules must not break pickles."""
    import pickle
    import pickletools

    from skorchlite import FineTuneClassifier

    ops = [arg for op, arg, _ in pickletools.genops(pickle.dumps(FineTuneClassifier(epochs=1))) if isinstance(arg, str)]
    assert "skorchlite.finetune" in ops and "skorchlite.finetune.estimator" not in ops
