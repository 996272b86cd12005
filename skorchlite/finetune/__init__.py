"""Fine-tuning: :class:`FineTuneClassifier` and everything one of its fits runs.

One job per module, read from the estimator down:

- ``estimator.py``: :class:`FineTuneClassifier`, the scikit-learn face
  (parameters, ``fit``, ``predict_proba``, ``transform``, sharing).
- ``parameters.py``: every parameter declared once, with its type and
  constraints (:class:`~.parameters.FineTuneParameters`); the estimator's
  constraints and the loop's configuration both come from it.
- ``run.py``: parameters to one training run: the checks beyond the
  constraints, the seed, the network and what keys it, its inputs, the
  fitted attributes a run leaves or restores; a fitted estimator's
  ``predict_proba`` and ``transform`` (:func:`~.run.infer`).
- ``loop.py``: the epoch loop (:class:`~.loop.Trainer`) over phases, from a
  frozen :class:`~.loop.TrainingConfig`: validation, best weights, early
  stopping, non-finite values, Ctrl-C.
- ``steps.py``: the pieces of one training step: freezing, optimiser groups
  and rates, schedule, BatchNorm folded into convolutions, weighted loss.
- ``inputs.py``: what the network reads (:class:`~.inputs.NetworkInputs`:
  embeddings, or images decoded once by :class:`~.inputs.ImageStore`), and
  the one path of inference, mirror test-time augmentation included.
- ``targets.py``: the target of a fit (one label per sample, or a
  multi-label indicator matrix), its classes, the loss weights, the
  validation split.
- ``augmentation.py``: the default, seeded training-time augmentation.
- ``model_file.py``: the data-only model file of ``save_weights`` and
  ``load_weights``.

Nothing here imports the command line, the report, :mod:`skorchlite.inspect`
or :mod:`skorchlite.strategies`: they build on it.
"""

from __future__ import annotations

from .estimator import FineTuneClassifier

# Pickles name a class by its module: this one, the public path, so that
# moving the estimator between this package's modules never breaks them.
FineTuneClassifier.__module__ = __name__

__all__ = ["FineTuneClassifier"]
