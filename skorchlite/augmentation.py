"""Where :class:`~skorchlite.finetune.augmentation.DefaultAugmentation` lived up
to skorchlite 0.2.0: pickles of a ``FineTuneClassifier`` given
``augment=DefaultAugmentation(...)`` name this module, and still load.
New code imports :mod:`skorchlite.finetune.augmentation`."""

from __future__ import annotations

from .finetune.augmentation import DefaultAugmentation, default_augmentation

__all__ = ["DefaultAugmentation", "default_augmentation"]
