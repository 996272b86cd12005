"""Which skorchlite wrote a pickle, how a pickle of another version is read,
and which vectors an extractor computes.

``skorchlite.__version__`` changes whenever behaviour or a file format
changes, so that it can say who wrote what. Estimators pickle it beside
their state (:class:`VersionedPickleMixin`); unpickling the state of
another version fills the parameters added since with their defaults and
warns (:class:`InconsistentVersionWarning`), as scikit-learn's
``BaseEstimator.__setstate__`` warns about its own version.

:data:`EMBEDDING_FORMAT` changes only when the vectors would: it, not the
package version, is in an extractor's fingerprint, so a fitted model and its
cached embeddings survive an upgrade that computes the same vectors.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

__all__ = [
    "EMBEDDING_FORMAT",
    "EMBEDDING_FORMAT_KEY",
    "VERSION_KEY",
    "InconsistentVersionWarning",
    "VersionedPickleMixin",
    "describe_version",
    "embedding_format_of",
    "shown",
]

# Bumped whenever behaviour or a file format changes (minor while below 1.0),
# so that model files and pickles can say which skorchlite wrote them;
# docs/contributing.md says when. It is skorchlite.__version__, kept here,
# in a module that imports no other of the package, so that every module
# may read it without depending on the package's __init__.
__version__ = "0.6.0"

# Bumped only when the same image, backbone, weights and parameters would
# give other vectors (a change of decoding, resizing, normalisation, pooling,
# the network's arithmetic...); docs/contributing.md says when. It keys the
# cache and an extractor's fitted fingerprint, so a bump refuses models and
# cache entries of the old vectors, and nothing else does. Format 1: the
# vectors of skorchlite 0.2.0 and since.
EMBEDDING_FORMAT = 1
# Where a fingerprint records it.
EMBEDDING_FORMAT_KEY = "embedding_format"
# Fingerprints of these versions recorded the package version instead, and
# their vectors are format 1's; those of earlier versions are of no format.
_FORMAT_OF_VERSION = {"0.2.0": 1}

# Where a pickled state records the version that wrote it; versions up to
# 0.1.0 did not record one.
VERSION_KEY = "_skorchlite_version"
_UNRECORDED = "0.1.0 or earlier"


def describe_version(version: object) -> str:
    """How messages name the skorchlite that wrote a file or a pickle.

    Parameters
    ----------
    version : object
        As the file or pickle records it; ``None`` when it records none.

    Returns
    -------
    str

    Examples
    --------
    >>> describe_version("0.2.0"), describe_version(None), describe_version(["9", "9"])
    ('skorchlite 0.2.0', 'skorchlite 0.1.0 or earlier', "skorchlite ['9', '9']")
    """
    return f"skorchlite {_UNRECORDED if version is None else shown(version)}"


def embedding_format_of(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """``fingerprint`` as this version writes it: one that records the
    package version (up to 0.2.0) gets the embedding format of that
    version's vectors instead, where it is known.

    Parameters
    ----------
    fingerprint : dict
        An extractor's ``fingerprint_``, as unpickled.

    Returns
    -------
    dict
        A new dict where the fingerprint changed, else ``fingerprint``; one
        of a version of unknown vectors keeps its version, and is refused.

    Examples
    --------
    >>> embedding_format_of({"pooling": "avg", "skorchlite": "0.2.0"})
    {'pooling': 'avg', 'embedding_format': 1}
    >>> embedding_format_of({"pooling": "avg", "skorchlite": "0.1.0"})
    {'pooling': 'avg', 'skorchlite': '0.1.0'}
    """
    version = fingerprint.get("skorchlite")
    if EMBEDDING_FORMAT_KEY in fingerprint or not isinstance(version, str) or version not in _FORMAT_OF_VERSION:
        return fingerprint
    upgraded = {key: value for key, value in fingerprint.items() if key != "skorchlite"}
    return {**upgraded, EMBEDDING_FORMAT_KEY: _FORMAT_OF_VERSION[version]}


def shown(value: object, limit: int = 40) -> str:
    """A value read from a file as one short line of a message, whatever
    the file holds (a string with newlines, a tensor...).

    Examples
    --------
    >>> shown("0.2.0"), shown("a\\nb"), shown("x" * 50, limit=8)
    ('0.2.0', "'a\\\\nb'", 'xxxxx...')
    """
    text = value if isinstance(value, str) and value.isprintable() else " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class InconsistentVersionWarning(UserWarning):
    """An estimator pickled by another skorchlite version was unpickled.

    Parameters added since took their defaults; the message names them and
    both versions. Refit the estimator, or check its results, before relying on it.
    """


class VersionedPickleMixin:
    """Pickles that record the skorchlite version that wrote them, and
    unpickle across versions.

    A state without a parameter of this version's ``__init__`` (a parameter
    added since) gets the signature's default (or ``_params_before``'s value),
    so the estimator behaves as the version that wrote it; a state of another version warns, naming both
    versions. Place it before ``BaseEstimator`` in the bases, whose own
    ``__getstate__``/``__setstate__`` (and version check) still run.
    """

    # What a fitted instance of this version holds, and for those that
    # earlier versions did not keep, the value that reproduces their
    # behaviour. A fitted pickle that lacks one without such a value cannot
    # be upgraded: unpickling it fails, naming the version that wrote it.
    _fitted_state: ClassVar[tuple[str, ...]] = ()
    _fitted_defaults: ClassVar[dict[str, Any]] = {}
    # A parameter added since whose default would change what a refit of an
    # earlier version's model does: the value that reproduces that version.
    _params_before: ClassVar[dict[str, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = super().__getstate__()  # type: ignore[assignment]  # BaseEstimator's: a dict
        return {**state, VERSION_KEY: __version__}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise TypeError(
                f"Cannot unpickle {type(self).__name__}: its state is a {type(state).__name__}, not a dict."
            )
        state = dict(state)
        version = state.pop(VERSION_KEY, None)
        if version != __version__:
            filled = self._upgrade(state, version)
            state = self._upgrade_fitted(state)
            warnings.warn(
                InconsistentVersionWarning(
                    f"This {type(self).__name__} was pickled by {describe_version(version)} and is loaded by "
                    f"skorchlite {__version__}"
                    + (f"; what was added since takes its default: {', '.join(filled)}" if filled else "")
                    + "; refit it, or check its results, before relying on it."
                ),
                stacklevel=2,
            )
        super().__setstate__(state)  # type: ignore[misc]  # BaseEstimator's, next in the MRO

    @classmethod
    def _upgrade_fitted(cls, state: dict[str, Any]) -> dict[str, Any]:
        """``state``, pickled by another version, with its fitted values as
        this version reads them (a class whose fitted values changed form
        overrides this). A pickle of this version is not passed here: an
        upgrade may cost (a module backbone's weights digested)."""
        return state

    @classmethod
    def _upgrade(cls, state: dict[str, Any], version: object) -> list[str]:
        """Give ``state`` what this version reads: the defaults of the
        parameters (and of a fitted state) it lacks, returned as
        ``name=value``; or one line naming ``version`` where there is none."""
        import inspect  # here: importing skorchlite (the command line's help) stays light

        no_default = inspect.Parameter.empty
        needed = {
            name: cls._params_before.get(name, param.default)
            for name, param in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
        }
        if any(name in state for name in cls._fitted_state):
            needed.update({name: cls._fitted_defaults.get(name, no_default) for name in cls._fitted_state})
        added = {name: value for name, value in needed.items() if name not in state}
        missing = [name for name, value in added.items() if value is no_default]
        if missing:
            raise ValueError(
                f"Cannot unpickle this {cls.__name__} of {describe_version(version)}: it lacks "
                f"{', '.join(missing)}, which skorchlite {__version__} needs and cannot infer; fit it again "
                f"with skorchlite {__version__}, or load it with the version that wrote it."
            )
        state.update(added)
        return [f"{name}={value!r}" for name, value in added.items()]
