"""Every private name of scikit-learn, torch and torchvision that skorchlite
imports, in one place, under public names.

Private names may change in any release of their library. Importing them
here only (``tests/test_private_api.py`` fails when another module imports
one) makes a release that moves one fail at import, in this module, naming
it; and the list below is what to check against a new release.

Tested with (``.ci/run`` runs the tests on both): the newest releases,
scikit-learn 1.9.1, torch 2.14.1, torchvision 0.29.1; and the lower bounds
in ``pyproject.toml`` (``.ci/lowest.txt``), scikit-learn 1.6.1, torch 2.3.0,
torchvision 0.18.0.

==========================================  ===================================
private name                                 what for
==========================================  ===================================
``sklearn.base._fit_context``                ``fit`` checks ``_parameter_constraints`` first
``sklearn.utils._param_validation``          the constraints (``Interval``, ``StrOptions``...)
``sklearn.utils._safe_indexing``             rows of any container (lists, arrays, frames)
``sklearn.utils.validation._num_samples``    the length of any container
``sklearn.utils.validation._check_sample_weight``  ``sample_weight`` as scikit-learn checks it
``torch.nn.modules.module._global_forward_hooks``  whether hooks registered for every module
``torch.nn.modules.module._global_forward_pre_hooks``  would change a module backbone's outputs
``torchvision.transforms._presets.ImageClassification``  a torchvision weights' evaluation transform
==========================================  ===================================

Estimators also follow scikit-learn's protocol of private methods by
inheritance, not import: ``_parameter_constraints``, ``_get_param_names``,
``_validate_params``, ``_n_features_out`` and ``StrOptions._mark_if_deprecated``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sklearn.base import _fit_context as fit_context
from sklearn.utils import _safe_indexing as safe_indexing
from sklearn.utils._param_validation import HasMethods, InvalidParameterError, Options, validate_parameter_constraints
from sklearn.utils._param_validation import Interval as SklearnInterval
from sklearn.utils._param_validation import StrOptions as SklearnStrOptions
from sklearn.utils.validation import _check_sample_weight as check_sample_weight
from sklearn.utils.validation import _num_samples as num_samples

# torch's names are imported on first use: the modules that need only
# scikit-learn's (validation, datasets, folds) stay free of torch.
if TYPE_CHECKING:
    from torchvision.transforms._presets import ImageClassification

__all__ = [
    "HasMethods",
    "ImageClassification",
    "InvalidParameterError",
    "Options",
    "SklearnInterval",
    "SklearnStrOptions",
    "check_sample_weight",
    "fit_context",
    "global_forward_hooks",
    "num_samples",
    "safe_indexing",
    "validate_parameter_constraints",
]


def global_forward_hooks() -> bool:
    """Whether forward hooks are registered for every module
    (``torch.nn.modules.module.register_module_forward_hook`` or its
    pre-hook twin): they change what any module computes.

    Examples
    --------
    >>> global_forward_hooks()
    False
    """
    from torch.nn.modules import module

    return bool(module._global_forward_hooks or module._global_forward_pre_hooks)


def __getattr__(name: str) -> Any:
    if name == "ImageClassification":
        from torchvision.transforms._presets import ImageClassification

        return ImageClassification
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
