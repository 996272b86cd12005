"""The fine-tuner's parameters are declared once (issue 25): the table
``FineTuneParameters``, from which the estimator's constraints and the loop's
configuration come; the names that scikit-learn wants spelled out again in
``__init__``, and every use of a name, must agree with it."""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import fields
from pathlib import Path

import pytest

import skorchlite.finetune
from skorchlite import FineTuneClassifier, PretrainedFeatureExtractor
from skorchlite.engine import SHARED_CONSTRAINTS
from skorchlite.finetune.loop import TrainingConfig
from skorchlite.finetune.parameters import FineTuneParameters, parameter_constraints

TABLE = {f.name: f for f in fields(FineTuneParameters)}
SIGNATURE = {name: p for name, p in inspect.signature(FineTuneClassifier.__init__).parameters.items() if name != "self"}
PACKAGE = Path(skorchlite.finetune.__file__).parent


def test_the_signature_names_the_tables_parameters_in_its_order():
    assert list(SIGNATURE) == list(TABLE)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_the_signature_and_the_table_give_each_parameter_the_same_type(name):
    # Both modules postpone annotations: each is the source text of its type.
    assert SIGNATURE[name].annotation == TABLE[name].type


def test_the_estimators_constraints_are_the_tables():
    assert FineTuneClassifier._parameter_constraints == parameter_constraints()
    assert list(parameter_constraints()) == list(TABLE)


def test_the_parameters_both_estimators_take_share_one_definition():
    extractor = PretrainedFeatureExtractor._parameter_constraints
    finetuner = FineTuneClassifier._parameter_constraints
    assert set(SHARED_CONSTRAINTS) == set(extractor) & set(finetuner)
    for name, constraints in SHARED_CONSTRAINTS.items():
        assert extractor[name] is constraints and finetuner[name] is constraints, name


def test_the_loop_reads_the_table_itself():
    assert {f.name: f.type for f in fields(TrainingConfig)}["params"] == "FineTuneParameters"


def test_every_parameter_the_package_reads_by_name_is_in_the_table():
    """``params.<name>`` anywhere in skorchlite/finetune: a renamed field fails
    here (and in mypy), not in the middle of a fit."""
    read = set()
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}  # a dict's params.items()
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and id(node) not in called:
                if ast.unparse(node.value).split(".")[-1] == "params":
                    read.add((path.name, node.attr))
    assert read, "the package reads no parameter by attribute: this test has gone stale"
    assert {(module, name) for module, name in read if name not in TABLE} == set()


def test_the_estimators_docstring_documents_every_parameter_of_the_table():
    section = FineTuneClassifier.__doc__.split("Parameters\n    ----------\n")[1].split("\n    Attributes\n")[0]
    documented = set(re.findall(r"^    (\w+) :", section, flags=re.MULTILINE))
    assert documented == set(TABLE)


def test_a_frozen_copy_reads_what_the_estimator_holds_now():
    clf = FineTuneClassifier(epochs=3)
    assert FineTuneParameters.of(clf).epochs == 3
    clf.set_params(epochs=5, lr=0.5)
    params = FineTuneParameters.of(clf)
    assert (params.epochs, params.lr) == (5, 0.5)
    assert {name: getattr(params, name) for name in TABLE} == clf.get_params(deep=False)
