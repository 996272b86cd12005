"""One way to check parameters: scikit-learn's constraints, for estimators and functions alike.

An estimator lists its constraints in ``_parameter_constraints`` and
decorates ``fit`` with :func:`sklearn.base._fit_context`, which checks them
first; a function passes its arguments and the same kind of constraints to
:func:`check_params`. Either way a bad value raises scikit-learn's
``InvalidParameterError`` (a ``ValueError`` and a ``TypeError``) with
scikit-learn's message, which names the parameter, the estimator or
function, what is allowed and the value given::

    The 'batch_size' parameter of grad_cam must be an int in the range [1, inf). Got 0 instead.

The constraints are scikit-learn's (``"boolean"``, ``"random_state"``,
``"verbose"``, ``None``, ``callable``, a type, :class:`HasMethods`...),
with two differences in the classes this module exports, which the
package uses instead of scikit-learn's: :class:`Interval` refuses booleans,
and :class:`StrOptions` lists its options in the order given. What a
constraint cannot say (a backbone's smallest input size, bfloat16 support
of the hardware, a cross-parameter rule) is checked after the constraints,
by the code that knows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sklearn import get_config

from .private_api import (
    HasMethods,
    InvalidParameterError,
    Options,
    SklearnInterval,
    SklearnStrOptions,
    validate_parameter_constraints,
)

__all__ = [
    "HasMethods",
    "Interval",
    "InvalidParameterError",
    "Options",
    "StrOptions",
    "check_estimator_params",
    "check_params",
    "check_unchanged",
]


class Interval(SklearnInterval):
    """scikit-learn's ``Interval`` constraint, refusing booleans.

    scikit-learn counts ``True`` as the int 1; here ``unfreeze=True`` or
    ``batch_size=True`` is a mistake to report, not a number.

    Examples
    --------
    >>> from numbers import Integral
    >>> positive = Interval(Integral, 1, None, closed="left")
    >>> positive.is_satisfied_by(3), positive.is_satisfied_by(True), str(positive)
    (True, False, 'an int in the range [1, inf)')
    """

    def is_satisfied_by(self, val: Any) -> bool:
        return not isinstance(val, bool) and super().is_satisfied_by(val)


class StrOptions(SklearnStrOptions):
    """scikit-learn's ``StrOptions`` constraint, listing its options in the order given.

    scikit-learn takes a set, whose order changes from run to run with
    Python's hash seed, and so would the messages; here the options are any
    iterable of strings, such as the ``typing.get_args`` of a ``Literal``.

    Examples
    --------
    >>> str(StrOptions(("onecycle", "cosine")))
    "a str among {'onecycle', 'cosine'}"
    """

    def __init__(self, options: Iterable[str], *, deprecated: set[str] | None = None):
        self.order = tuple(options)
        super().__init__(set(self.order), deprecated=deprecated)

    def __str__(self) -> str:
        return f"a str among {{{', '.join(self._mark_if_deprecated(option) for option in self.order)}}}"


def check_params(
    values: Mapping[str, Any],
    constraints: Mapping[str, list[Any]],
    caller: str,
    *,
    notes: Mapping[str, str] | None = None,
) -> None:
    """Check a function's arguments as scikit-learn checks an estimator's parameters.

    Like scikit-learn's ``validate_params`` decorator, but called in the
    function's body, so that the function keeps its own signature,
    docstring and doctests, and checks only the arguments it names. As
    there, nothing is checked under
    ``sklearn.config_context(skip_parameter_validation=True)``, nor inside
    the ``fit`` of an estimator that validated its own parameters and
    prefers to skip nested validation.

    Parameters
    ----------
    values : mapping
        Each argument's name and value.
    constraints : mapping
        The constraints of each name in ``values``, as in an estimator's
        ``_parameter_constraints``: the value must satisfy one of them.
    caller : str
        The function's name, as the message gives it.
    notes : mapping or None, default=None
        A sentence per name, added to its message (say what the units are).

    Raises
    ------
    InvalidParameterError
        For the first value that satisfies none of its constraints.
    KeyError
        When a name of ``values`` has no constraints (a mistake here, not
        the caller's).

    Examples
    --------
    >>> from numbers import Integral
    >>> check_params({"k": 3}, {"k": [Interval(Integral, 1, None, closed="left")]}, "feature_maps")
    >>> check_params({"k": 0}, {"k": [Interval(Integral, 1, None, closed="left")]}, "feature_maps")
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: The 'k' parameter of feature_maps must be an int in the range [1, inf). Got 0 instead.
    """
    unchecked = sorted(set(values) - set(constraints))
    if unchecked:
        raise KeyError(f"{caller} has no constraints for {unchecked}.")
    if get_config()["skip_parameter_validation"]:
        return
    for name, value in values.items():
        try:
            validate_parameter_constraints({name: constraints[name]}, {name: value}, caller_name=caller)
        except InvalidParameterError as err:
            if notes is None or name not in notes:
                raise
            raise InvalidParameterError(f"{err} {notes[name]}") from None


def check_estimator_params(estimator: Any) -> None:
    """Check an estimator's parameters in a method other than ``fit``.

    ``fit`` checks them through ``_fit_context``. A method that reads them
    later (``transform``, ``predict_proba``) calls this, so that a
    parameter changed by ``set_params`` since ``fit`` fails here, named,
    rather than deep in the network. Skipped where ``_fit_context`` would
    skip: under ``skip_parameter_validation``, and so inside the ``fit`` of
    an estimator that checked the parameters it passes on.

    Parameters
    ----------
    estimator : BaseEstimator
        With ``_parameter_constraints``.

    Raises
    ------
    InvalidParameterError
        For the first parameter that satisfies none of its constraints.
    """
    if not get_config()["skip_parameter_validation"]:
        estimator._validate_params()


def check_unchanged(fitted: Mapping[str, Any], now: Mapping[str, Any], *, what: str, remedy: str) -> None:
    """Refuse settings that no longer give what was fitted, naming each change.

    The one guard of every method that reads an estimator's parameters after
    ``fit`` (``transform``, ``predict_proba``, a warm start): results of the
    new settings would pass for the fitted ones.

    Parameters
    ----------
    fitted, now : mapping
        What the settings gave at ``fit``, and what they give now.
    what : str
        What changed, as the message starts: ``"The extractor's parameters or weights"``.
    remedy : str
        What to do, as the message ends.

    Raises
    ------
    ValueError
        ``"{what} changed since fit ({key} {fitted!r} -> {now!r}, ...); {remedy}."``

    Examples
    --------
    >>> check_unchanged({"layer": None}, {"layer": None}, what="The parameters", remedy="call fit again")
    >>> check_unchanged({"layer": None}, {"layer": "mid"}, what="The parameters", remedy="call fit again")
    Traceback (most recent call last):
    ...
    ValueError: The parameters changed since fit (layer None -> 'mid'); call fit again.
    """
    if now == fitted:
        return
    changed = ", ".join(
        f"{key} {fitted.get(key)!r} -> {now.get(key)!r}"
        for key in sorted(set(now) | set(fitted))
        if now.get(key) != fitted.get(key)
    )
    raise ValueError(f"{what} changed since fit ({changed}); {remedy}.")
