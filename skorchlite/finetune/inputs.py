"""What a fine-tuned network reads: the rows of a data set as embeddings for
the head alone, or as preprocessed image tensors for the whole network,
decoded once and kept across epochs; and the one path of its inference."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as F
from PIL import Image
from torch import nn

from ..backbones import Preprocessing
from ..engine import crop_pixels, forward, iter_batches, resize_short_side, to_input
from ..extractor import PretrainedFeatureExtractor
from ..images import Sample, load_rgb
from ..memory import freed_memory_kept

__all__ = ["DECODED_MEMORY_BYTES", "ImageStore", "NetworkInputs"]

#: Decoded, resized images a fine-tuning run keeps in memory across epochs
#: (at 256 px, about 5,000 RGB images); rows past it are decoded each epoch.
DECODED_MEMORY_BYTES = 1 << 30


class NetworkInputs:
    """Row indices of a data set to network inputs, batch by batch.

    In embedding mode (``extractor`` given) the head trains on, and predicts
    from, the extractor's embeddings of the samples, extracted once, on first
    use. Otherwise the inputs are image tensors from an :class:`ImageStore`,
    which decodes each image once when training (``target`` given) and keeps
    none for inference, a single pass.

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
        :meth:`ImageStore.batches` takes it.
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
        # Only training reads the rows again, epoch after epoch.
        keep = DECODED_MEMORY_BYTES if target is not None else 0
        self.images = ImageStore(samples, preprocessing, workers=workers, max_bytes=keep)
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

    def logits(self, model: nn.Sequential, indices: np.ndarray) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """``(rows, logits)`` of ``model`` (body, head) on unaugmented rows.

        Parameters
        ----------
        model : torch.nn.Sequential
            ``model[0]`` the body, ``model[1]`` the head.
        indices : ndarray of int

        Yields
        ------
        rows : ndarray of int
        logits : torch.Tensor of shape (N, n_classes)
        """
        if self.embedding_mode:
            for rows, features in self._embedding_batches(indices):
                yield rows, model[1](features)
            return
        yield from self.outputs(model, indices)

    def probabilities(
        self, model: nn.Sequential, indices: np.ndarray, *, tta: bool = False, multilabel: bool = False
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """``(rows, probabilities)`` of ``model`` (body, head) on unaugmented
        rows: the softmax of its logits, or each label's sigmoid for a
        ``multilabel`` model, in float32.

        With ``tta``, the mean of the probabilities of each image and its
        mirror image, which needs the images even in embedding mode.

        Parameters
        ----------
        model : torch.nn.Sequential
        indices : ndarray of int
        tta, multilabel : bool, default=False

        Yields
        ------
        rows : ndarray of int
        probabilities : torch.Tensor of shape (N, n_classes)
        """

        def activation(logits: torch.Tensor) -> torch.Tensor:
            return logits.float().sigmoid() if multilabel else logits.float().softmax(1)

        if not tta:
            for rows, logits in self.logits(model, indices):
                yield rows, activation(logits)
            return
        yield from self.outputs(lambda images: activation(model(images)), indices, mirror=True)

    def outputs(
        self, network: Callable[[torch.Tensor], torch.Tensor], indices: np.ndarray, *, mirror: bool = False
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """``(rows, outputs)`` of ``network`` on the unaugmented images of
        rows ``indices``: every inference of a fine-tuned network (its
        logits, its features) comes here.

        Parameters
        ----------
        network : callable
            The whole network or its body.
        indices : ndarray of int
        mirror : bool, default=False
            Average each output with that of the mirror image
            (:func:`skorchlite.engine.forward`).

        Yields
        ------
        rows : ndarray of int
        outputs : torch.Tensor
        """
        for rows, images in self.images.batches(indices.tolist(), self.batch_size, self.device):
            yield rows, forward(network, images, mirror=mirror)

    def _embedding_batches(self, indices: np.ndarray) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        if self._embeddings is None:
            assert self.extractor is not None
            self._embeddings = torch.from_numpy(self.extractor.fit_transform(self.samples)).to(self.device)
        for start in range(0, len(indices), self.batch_size):
            rows = indices[start : start + self.batch_size]
            yield rows, self._embeddings[torch.as_tensor(rows, device=self.device)]


class ImageStore:
    """Network inputs for the rows of a training set, epoch after epoch.

    Each image is decoded once and kept, resized to the preprocessing's
    ``resize_size``, up to ``max_bytes`` in all (rows past that are decoded
    again when needed). Evaluation inputs are its centre crops; training
    inputs pass through an augmentation first.

    Parameters
    ----------
    samples : sequence
        Samples from :func:`skorchlite.images.check_images`.
    preprocessing : Preprocessing
    workers : int
        Decoding and augmentation threads.
    max_bytes : int, default=DECODED_MEMORY_BYTES
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        preprocessing: Preprocessing,
        *,
        workers: int,
        max_bytes: int = DECODED_MEMORY_BYTES,
    ):
        self.samples, self.preprocessing, self.workers, self.max_bytes = samples, preprocessing, workers, max_bytes
        self._kept: dict[int, Image.Image] = {}
        self._bytes = 0
        self._lock = threading.Lock()  # decoding threads add rows at once: the bound holds for all

    def resized(self, row: int) -> Image.Image:
        """Row ``row``'s RGB image with its shorter side at ``resize_size``."""
        image = self._kept.get(row)
        if image is None:
            image = resize_short_side(load_rgb(self.samples[row], row), self.preprocessing)
            size = image.width * image.height * 3
            with self._lock:
                if self._bytes + size <= self.max_bytes:
                    self._kept[row] = image
                    self._bytes += size
        return image

    def batches(
        self,
        rows: Sequence[int],
        batch_size: int,
        device: torch.device,
        *,
        augment: Callable[..., Image.Image] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """``(rows, normalised channels-last batch)`` in the order of ``rows``.

        An ``augment`` that takes ``(image, seed)`` (the default
        augmentation) runs in the decoding threads, with ``seeds[k]`` for
        ``rows[k]``, so the result does not depend on the number of threads.
        Any other callable takes ``(image)`` and runs in the calling thread,
        in order, so that its use of torch's global random state is
        reproducible too.
        """
        seeded = getattr(augment, "seeded", False)
        position = {row: k for k, row in enumerate(rows)}

        def prepare(row: int) -> Any:
            image = self.resized(row)
            if seeded:
                assert augment is not None and seeds is not None
                return crop_pixels(augment(image, int(seeds[position[row]])), self.preprocessing)
            return image if augment is not None else crop_pixels(image, self.preprocessing, resized=True)

        with freed_memory_kept():
            for batch_rows, items in iter_batches(rows, prepare, batch_size, self.workers):
                if augment is not None and not seeded:
                    items = [_user_augmented(augment(image), self.preprocessing) for image in items]
                yield np.asarray(batch_rows), to_input(items, self.preprocessing, device)


def _user_augmented(image: Any, preprocessing: Preprocessing) -> np.ndarray:
    """The crop of what a user's augmentation returned (a PIL image or a
    (C, H, W) uint8 tensor, as torchvision transforms give)."""
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim != 3:
            raise TypeError(
                f"augment returned a {image.dtype} tensor of shape {tuple(image.shape)}; return a PIL image "
                f"or a (C, H, W) uint8 tensor."
            )
        image = F.to_pil_image(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"augment returned {type(image).__name__}; return a PIL image.")
    return crop_pixels(image.convert("RGB"), preprocessing)
