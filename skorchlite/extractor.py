"""PretrainedFeatureExtractor: a frozen pretrained backbone as a scikit-learn transformer."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import Tags
from sklearn.utils.validation import check_is_fitted
from torch import nn

from . import versioning
from .backbones import Backbone, Preprocessing, check_image_size, estimator_backbone
from .backbones.identity import upgrade_module_digest, warn_uncached
from .cache import CacheNamespace, get_or_compute, resolve_cache
from .engine import (
    POOLINGS,
    SHARED_CONSTRAINTS,
    Pooling,
    Precision,
    backbone_network,
    check_precision,
    decode_workers,
    embed,
    output_widths,
    resolve_device,
)
from .images import Sample, check_images, content_key
from .private_api import fit_context
from .progress import progress_bar
from .validation import StrOptions, check_estimator_params, check_unchanged
from .versioning import VersionedPickleMixin, describe_version, embedding_format_of

__all__ = ["PretrainedFeatureExtractor"]

# The keys of a fingerprint that the weights (or a module backbone's digest)
# give; every other key is a parameter's, for the message that names what changed.
_WEIGHTS_KEYS = frozenset({"weights", "weights_sha256"})


def _check_format(fitted: dict[str, Any]) -> None:
    """Refuse a fitted fingerprint of other vectors than this version's (see
    :data:`~skorchlite.versioning.EMBEDDING_FORMAT`), naming both."""
    format_ = fitted.get(versioning.EMBEDDING_FORMAT_KEY)
    if format_ == versioning.EMBEDDING_FORMAT:
        return
    then = (
        f"embedding format {format_!r}"
        if versioning.EMBEDDING_FORMAT_KEY in fitted
        else f"the vectors of {describe_version(fitted.get('skorchlite'))}"
    )
    raise ValueError(
        f"This extractor was fitted with {then}; skorchlite {versioning.__version__} computes embedding format "
        f"{versioning.EMBEDDING_FORMAT}, whose vectors differ: fit it again before transform, and refit the steps "
        "after it, which learned from the old vectors."
    )


class PretrainedFeatureExtractor(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, VersionedPickleMixin, BaseEstimator
):
    """Embed images with a frozen pretrained backbone.

    Any scikit-learn estimator placed after it becomes the classifier head.
    Embeddings are cached on disk, keyed by the model's fingerprint and the
    image content, so every clone of the extractor (cross-validation folds,
    grid-search candidates, worker processes) computes each distinct image
    once.

    Parameters
    ----------
    backbone : str, (str, path) or torch.nn.Module, default="efficientnet_lite0"
        A name from :func:`skorchlite.backbones.list_backbones`; an
        ``(architecture name, checkpoint path)`` pair; or any module, whose
        output (vectors, or a feature map that is average-pooled) is the
        embedding. A module travels inside the estimator (clones, pickles)
        and is keyed by a digest of its weights, buffers, attributes and the
        code of its classes, so a change of any never meets stale cached
        embeddings; one whose digest cannot cover all it computes (forward
        hooks, say) is not cached, with a warning. See
        :func:`skorchlite.backbones.resolve_backbone` and ``docs/backbones.md``.
    weights : str, path-like or None, default="DEFAULT"
        ``"DEFAULT"``, a torchvision weights member such as ``"IMAGENET1K_V2"``,
        a path to a state-dict file for the named architecture, or ``None``
        for a random initialisation (seed 0; ``fingerprint_["weights"]`` is
        ``"random-init:seed=0"``), a baseline for what pretraining buys.
    preprocessing : Preprocessing, dict or None, default=None
        The evaluation transform: ``None`` keeps the backbone's own
        (ImageNet's for a module); a dict takes ``size``, ``mean``, ``std``,
        ``interpolation`` (:func:`skorchlite.backbones.check_preprocessing`).
    layer : str, list of str or None, or None, default=None
        ``None`` gives the penultimate pooled features (the classifier's
        input). A node name (see :func:`skorchlite.backbones.list_layers`,
        or ``skorchlite backbones --layers NAME``) gives that node's output,
        pooled globally. A shortcut of the backbone (``"mid"``: one
        mid-level stage; ``"stages"``: the last three stages and the
        penultimate features; ``"blocks"``: every residual block from the
        mid stage on, and the penultimate features) or a list of names
        (``None`` in it: the penultimate features) gives each layer's
        pooled output, concatenated in that order, from one forward pass.
    pooling : {"avg", "max", "avg+max"}, default="avg"
        Global pooling of a spatial feature map; ``"avg+max"`` concatenates
        both, doubling the width.
    tta : bool, default=False
        Test-time augmentation: each embedding is the mean of the image's
        and its left-right mirror image's, at twice the network time. For
        images whose meaning does not depend on the side (most medical
        scans, photographs); cached apart from plain embeddings.
    image_size : int or None, default=None
        Side of the square crop the network sees; ``None`` keeps the size
        the weights were trained at (224 for EfficientNet-Lite0). Smaller is
        faster; the resize-to-crop ratio is kept.
    batch_size : int, default=32
        Images per forward pass.
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU.
    precision : {"float32", "bfloat16"}, default="float32"
        Arithmetic of the forward pass. ``"bfloat16"`` runs it under
        autocast, about twice as fast where the hardware computes bfloat16
        natively (CPUs with AVX512_BF16 or AMX, recent GPUs) and refused
        elsewhere; embeddings stay within about 0.3 % (cosine) of float32
        ones and are cached apart from them.
    num_workers : int or None, default=None
        Threads that decode and preprocess images while the network runs;
        ``None`` uses as many as torch has threads (joblib lowers that in
        its worker processes, so ``n_jobs`` does not oversubscribe cores).
    cache : bool, str or path-like, default=True
        ``True`` uses :func:`skorchlite.cache.default_cache_dir`; a path
        chooses the folder; ``False`` disables caching. Clones and processes
        with the same cache embed each distinct image once: processes
        running at the same time split new images between them.
    verbose : int, default=0
        ``> 0`` shows a progress bar and a summary line per ``transform``.

    Attributes
    ----------
    fingerprint_ : dict
        What determines the embeddings: backbone, resolved weights and their
        SHA-256, preprocessing, layer, pooling, mirror TTA, precision (``"dtype"``),
        and the embedding format (:data:`skorchlite.versioning.EMBEDDING_FORMAT`,
        which changes only when skorchlite's vectors do; not the package
        version, so an upgrade that computes the same vectors keeps a pickled
        model working, with an ``InconsistentVersionWarning``, and its cache
        entries). It keys the cache; :meth:`transform` checks the
        parameters as :meth:`fit` does and refuses to run when they no
        longer give it (any parameter that changes the vectors), or when
        this skorchlite computes another embedding format, naming what changed.
    n_features_out_ : int
        Width of the embedding.
    layers_ : list of str or None
        The node names ``layer`` stands for, in column order (``None``:
        the penultimate features).
    layer_widths_ : list of int
        Columns from each of ``layers_``.

    See Also
    --------
    skorchlite.backbones.get_backbone : The registry behind ``backbone``.

    Examples
    --------
    >>> import numpy as np
    >>> from skorchlite import PretrainedFeatureExtractor
    >>> X = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    >>> PretrainedFeatureExtractor(cache=False).fit_transform(X).shape
    (2, 1280)
    """

    _parameter_constraints: dict = {
        **SHARED_CONSTRAINTS,
        "pooling": [StrOptions(POOLINGS)],
    }

    _fitted_state = ("layers_", "fingerprint_", "layer_widths_", "n_features_out_")

    def __init__(
        self,
        backbone: str | tuple[str, str | os.PathLike] | torch.nn.Module = "efficientnet_lite0",
        *,
        weights: str | os.PathLike | None = "DEFAULT",
        preprocessing: Preprocessing | dict[str, Any] | None = None,
        layer: str | Sequence[str | None] | None = None,
        pooling: Pooling = "avg",
        tta: bool = False,
        image_size: int | None = None,
        batch_size: int = 32,
        device: str | torch.device = "auto",
        precision: Precision = "float32",
        num_workers: int | None = None,
        cache: bool | str | os.PathLike = True,
        verbose: int = 0,
    ):
        self.backbone = backbone
        self.weights = weights
        self.preprocessing = preprocessing
        self.layer = layer
        self.pooling = pooling
        self.tta = tta
        self.image_size = image_size
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.num_workers = num_workers
        self.cache = cache
        self.verbose = verbose

    def _check_params(self) -> None:
        """What ``_parameter_constraints`` cannot say: the backbone's smallest
        input, the device and its bfloat16 support, the cache folder."""
        check_image_size(self.backbone, self.image_size, self.weights)
        check_precision(self.precision, resolve_device(self.device))
        resolve_cache(self.cache)

    def _fitted_backbone(self) -> Backbone:
        """The backbone, after fit's checks and the check that the parameters still give
        the fitted fingerprint: every method that embeds after fit calls this first."""
        check_is_fitted(self, "fingerprint_")
        check_estimator_params(self)
        self._check_params()
        backbone = self._backbone()
        self._check_unchanged(backbone)
        return backbone

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any = None, y: Any = None) -> PretrainedFeatureExtractor:
        """Resolve the backbone; no image is read.

        Parameters
        ----------
        X : ignored
            Accepted for pipeline compatibility.
        y : ignored

        Returns
        -------
        self : PretrainedFeatureExtractor
        """
        self._check_params()
        backbone = self._backbone()
        self.layers_ = list(self._layers(backbone))
        self.fingerprint_ = self._fingerprint(backbone)
        if self.layers_ == [None] and self.pooling == "avg":
            widths: tuple[int, ...] = (backbone.embedding_dim,)
        else:
            cpu = torch.device("cpu")
            widths = output_widths(self._network(cpu, backbone), self._preprocessing(backbone).crop_size)
        self.layer_widths_ = list(widths)
        self.n_features_out_ = sum(widths)
        return self

    # The helpers below take the backbone resolved once per fit or transform:
    # resolving a module backbone hashes its state dict, and the network that
    # runs must be the one whose fingerprint was checked.
    def _layers(self, backbone: Backbone | None = None) -> tuple[str | None, ...]:
        return (backbone or self._backbone()).resolve_layers(self.layer)

    def _fingerprint(self, backbone: Backbone) -> dict[str, Any]:
        """What the current parameters make of an image (see ``fingerprint_``)."""
        return {
            **backbone.fingerprint(),
            "preprocessing": asdict(self._preprocessing(backbone)),
            # Resolved names: a shortcut redefined later never meets its old vectors.
            "layer": layers[0] if len(layers := self._layers(backbone)) == 1 else list(layers),
            "pooling": self.pooling,
            "tta": "mirror" if self.tta else None,
            "dtype": self.precision,
            # Not the package version: an upgrade that computes the same vectors keeps the model and its cache.
            versioning.EMBEDDING_FORMAT_KEY: versioning.EMBEDDING_FORMAT,
        }

    def _check_unchanged(self, backbone: Backbone) -> None:
        """Refuse to embed with settings other than those fitted, or vectors of
        another format than the fitted one's: they would be stored under the
        fitted fingerprint, and the steps after the extractor learned from
        the fitted vectors. The message names what changed."""
        fitted, now = self.fingerprint_, self._fingerprint(backbone)
        _check_format(fitted)
        changed = {key for key in set(fitted) | set(now) if fitted.get(key) != now.get(key)}
        kinds = ["parameters"] * bool(changed - _WEIGHTS_KEYS) + ["weights"] * bool(changed & _WEIGHTS_KEYS)
        check_unchanged(
            fitted, now, what=f"The extractor's {' and '.join(kinds)}", remedy="call fit again before transform"
        )

    @classmethod
    def _upgrade_fitted(cls, state: dict[str, Any]) -> dict[str, Any]:
        if isinstance(state.get("fingerprint_"), dict):
            # Fitted by a version that recorded itself, not its vectors' format.
            state["fingerprint_"] = embedding_format_of(state["fingerprint_"])
            state["fingerprint_"] = upgrade_module_digest(state["fingerprint_"], state.get("backbone"))
        return state

    def _backbone(self) -> Backbone:
        return estimator_backbone(self)

    def _preprocessing(self, backbone: Backbone | None = None) -> Preprocessing:
        return (backbone or self._backbone()).preprocessing.resized(self.image_size)

    def _network(self, device: torch.device, backbone: Backbone | None = None) -> nn.Module:
        backbone = backbone or self._backbone()  # keyed by name and weights digest, never by the module object
        return backbone_network(backbone, self._layers(backbone), self.pooling, device)

    def _namespace(self, backbone: Backbone) -> CacheNamespace | None:
        """The fitted fingerprint's cache namespace; ``None`` without a cache or a module digest."""
        cache = resolve_cache(self.cache)
        if cache is None:
            return None
        if backbone.weights.unkeyed:
            warn_uncached(backbone.name, backbone.weights.sha256, backbone.weights.unkeyed)
            return None
        return cache.namespace(self.fingerprint_)

    @property
    def _n_features_out(self) -> int:
        return self.n_features_out_

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns.

        ``pretrainedfeatureextractor0``, ``...1``... for one layer; for
        several, each name says its layer:
        ``pretrainedfeatureextractor_{node}_{i}`` (``penultimate`` for
        ``None``), ``i`` counting that layer's columns.

        Parameters
        ----------
        input_features : None
            Ignored; images have no input feature names.

        Returns
        -------
        ndarray of str objects, shape (n_features_out_,)
        """
        names = super().get_feature_names_out(input_features)
        if len(self.layers_) == 1:
            return names
        prefix = type(self).__name__.lower()
        return np.asarray(
            [
                f"{prefix}_{'penultimate' if layer is None else layer}_{i}"
                for layer, width in zip(self.layers_, self.layer_widths_, strict=True)
                for i in range(width)
            ],
            dtype=object,
        )

    def transform(self, X: Any) -> np.ndarray:
        """Embed images.

        Parameters
        ----------
        X : sequence of images
            Paths (str or path-like), PIL images, a uint8 array (N, H, W) or
            (N, H, W, C), a float array in [0, 1], or a list of arrays.

        Returns
        -------
        ndarray of shape (n_samples, n_features_out_), dtype float32
            Row ``i`` is the embedding of ``X[i]``.

        Raises
        ------
        ValueError
            For a bad image (naming its index and cause), or when the
            parameters, the weights or the embedding format changed since
            :meth:`fit` (naming which).
        """
        check_is_fitted(self, "fingerprint_")
        return self.transform_samples(check_images(X))

    def transform_samples(self, samples: Sequence[Sample], *, first_index: int = 0) -> np.ndarray:
        """:meth:`transform` of samples already checked by ``check_images``.

        ``first_index`` is the position of ``samples[0]`` in a longer X of
        which these are a slice (a partition in :mod:`skorchlite.dask`), so
        that error messages name the sample's index in that X.

        Parameters
        ----------
        samples : sequence
            From :func:`skorchlite.images.check_images`.
        first_index : int, default=0

        Returns
        -------
        ndarray of shape (len(samples), n_features_out_), dtype float32
        """
        backbone = self._fitted_backbone()
        start = time.perf_counter()
        keys = [content_key(s, i) for i, s in enumerate(samples, start=first_index)]
        out = np.empty((len(samples), self.n_features_out_), dtype=np.float32)
        filled = get_or_compute(
            self._namespace(backbone),
            keys,
            lambda rows: self._embed(backbone, samples, rows, first_index),
            out,
            progress=lambda total: progress_bar(total, self.verbose, "embedding"),
        )
        if self.verbose:
            print(
                f"[PretrainedFeatureExtractor] {len(samples)} images: {filled.computed} computed, "
                f"{filled.cached} from cache, {filled.shared} from other processes, "
                f"{time.perf_counter() - start:.1f} s"
            )
        return out

    def _embed(
        self, backbone: Backbone, samples: Sequence[Sample], rows: Iterator[int], first_index: int
    ) -> Iterator[tuple[list[int], list[str], np.ndarray]]:
        """The network's vectors of ``samples[row]`` for ``rows``, in batches
        of ``(rows, content keys of the bytes decoded, vectors)``: what
        :func:`~skorchlite.cache.get_or_compute` asks for."""
        device = resolve_device(self.device)
        return embed(
            self._network(device, backbone),
            samples,
            rows,
            self._preprocessing(backbone),
            batch_size=self.batch_size,
            device=device,
            precision=self.precision,
            workers=decode_workers(self.num_workers),
            first_index=first_index,
            mirror=self.tta,
        )

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []
        tags.target_tags.required = False
        tags.requires_fit = True
        return tags
