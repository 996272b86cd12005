"""What a fine-tuned network reads: the rows of a data set as embeddings for
the head alone, or as preprocessed image tensors for the whole network."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .backbones import Preprocessing
from .engine import ImageStore
from .extractor import PretrainedFeatureExtractor
from .images import Sample

__all__ = ["NetworkInputs"]


class NetworkInputs:
    """Row indices of a data set to network inputs, batch by batch.

    In embedding mode (``extractor`` given) the head trains on, and predicts
    from, the extractor's embeddings of the samples, extracted once, on first
    use. Otherwise the inputs are image tensors from the engine's
    :class:`~skorchlite.engine.ImageStore`, which decodes each image once.

    Parameters
    ----------
    samples : sequence
        Samples from :func:`skorchlite.images.check_images`.
    preprocessing : Preprocessing
        The evaluation transform, at the crop size the network sees.
    batch_size : int
    device : torch.device
    workers : int
        Decoding (and seeded augmentation) threads.
    augment : callable or None, default=None
        Training-time augmentation of each decoded image, as
        :meth:`ImageStore.batches <skorchlite.engine.ImageStore.batches>`
        takes it.
    extractor : PretrainedFeatureExtractor or None, default=None
        Embedding mode: its ``fit_transform(samples)`` are the head's inputs.
    target, weight : array-like or None, default=None
        Each row's class index and loss weight, for training; kept as the
        tensors ``target`` and ``weight``.

    Examples
    --------
    >>> import numpy as np
    >>> from skorchlite.images import check_images
    >>> pre = Preprocessing(crop_size=32, resize_size=36, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)
    >>> samples = check_images(np.zeros((3, 40, 40, 3), np.uint8))
    >>> inputs = NetworkInputs(samples, pre, batch_size=2, device=torch.device("cpu"), workers=1)
    >>> [(rows.tolist(), tuple(x.shape)) for rows, x in inputs.training_batches(np.arange(3))]
    [([0, 1], (2, 3, 32, 32)), ([2], (1, 3, 32, 32))]
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        preprocessing: Preprocessing,
        *,
        batch_size: int,
        device: torch.device,
        workers: int,
        augment: Callable[..., Image.Image] | None = None,
        extractor: PretrainedFeatureExtractor | None = None,
        target: Any = None,
        weight: Any = None,
    ):
        self.samples, self.batch_size, self.device = samples, batch_size, device
        self.augment, self.extractor = augment, extractor
        self.target = None if target is None else torch.as_tensor(target)
        self.weight = None if weight is None else torch.as_tensor(weight)
        self.images = ImageStore(samples, preprocessing, workers=workers)
        self._embeddings: torch.Tensor | None = None

    @property
    def embedding_mode(self) -> bool:
        """Whether the head reads embeddings: the body then never runs on the rows."""
        return self.extractor is not None

    def training_batches(
        self, indices: np.ndarray, seeds: Sequence[int] | None = None
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """``(rows, inputs)`` in the order of ``indices``: embeddings in
        embedding mode, else images through ``augment``, with ``seeds[k]``
        drawing the changes of row ``indices[k]``.

        Parameters
        ----------
        indices : ndarray of int
        seeds : sequence of int, default=None
            One per row, for a seeded ``augment``.

        Yields
        ------
        rows : ndarray of int
        inputs : torch.Tensor
            Embeddings (N, D) or a channels-last image batch (N, 3, H, W).
        """
        if self.embedding_mode:
            return self._embedding_batches(indices)
        return self.images.batches(indices.tolist(), self.batch_size, self.device, augment=self.augment, seeds=seeds)

    def logits(
        self, model: nn.Sequential, indices: np.ndarray, tta: bool = False
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """``(rows, logits)`` of ``model`` (body, head) on unaugmented rows.

        With ``tta``, the log of the mean probabilities of each image and its
        mirror image, which needs the images even in embedding mode.

        Parameters
        ----------
        model : torch.nn.Sequential
            ``model[0]`` the body, ``model[1]`` the head.
        indices : ndarray of int
        tta : bool, default=False

        Yields
        ------
        rows : ndarray of int
        logits : torch.Tensor of shape (N, n_classes)
        """
        if self.embedding_mode and not tta:
            for rows, features in self._embedding_batches(indices):
                yield rows, model[1](features)
            return
        for rows, images in self.images.batches(indices.tolist(), self.batch_size, self.device):
            logits = model(images)
            if tta:
                logits = (logits.softmax(1) + model(images.flip(3)).softmax(1)).div(2).log()
            yield rows, logits

    def _embedding_batches(self, indices: np.ndarray) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        if self._embeddings is None:
            assert self.extractor is not None
            self._embeddings = torch.from_numpy(self.extractor.fit_transform(self.samples)).to(self.device)
        for start in range(0, len(indices), self.batch_size):
            rows = indices[start : start + self.batch_size]
            yield rows, self._embeddings[torch.as_tensor(rows, device=self.device)]
