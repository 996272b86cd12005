"""The engine: the one code path that moves images through a network.

The extractor, the fine-tuner, :mod:`skorchlite.inspect` and
:mod:`skorchlite.dask` all come here for the device, the precision, the
network built for inference (once per process, by :mod:`skorchlite.networks`,
re-exported here), decoding and preprocessing
in threads that overlap the forward pass, batching, the decoded images kept
across fine-tuning epochs, and the allocator policy while the work runs.
So identical settings give identical tensors, whichever caller asks.

Preprocessing is torchvision's ``ImageClassification`` preset, split at the
point where threads help: resizing and cropping run on PIL images in the
decoding threads (Pillow releases the GIL); the crops travel as uint8 and
are scaled and normalised as one batch, already in channels-last memory.
The result is bit-identical to the preset applied image by image.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

import numpy as np
import torch
import torchvision.transforms.functional as F
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode

from .backbones import Preprocessing
from .images import Sample, load_keyed, load_rgb
from .memory import freed_memory_kept
from .networks import POOLINGS, GlobalPool, PooledNodes, Pooling, backbone_network, inference_network, output_widths
from .validation import StrOptions, check_params

__all__ = [
    "DECODED_MEMORY_BYTES",
    "POOLINGS",
    "PRECISIONS",
    "GlobalPool",
    "ImageStore",
    "PooledNodes",
    "Pooling",
    "Precision",
    "autocast",
    "backbone_network",
    "check_precision",
    "crop_pixels",
    "decode_workers",
    "embed",
    "inference_network",
    "iter_batches",
    "output_widths",
    "prepared_batches",
    "resolve_device",
    "to_input",
]

#: ``precision``: the arithmetic of forward (and backward) passes (autocast).
Precision = Literal["float32", "bfloat16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

#: Decoded, resized images a fine-tuning run keeps in memory across epochs
#: (at 256 px, about 5,000 RGB images); rows past it are decoded each epoch.
DECODED_MEMORY_BYTES = 1 << 30

T = TypeVar("T")


# ------------------------------------------------------------------ device
def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device for a ``device`` parameter.

    ``"auto"`` is CUDA when available, else the CPU.

    Raises
    ------
    ValueError
        For a name torch does not know, or a CUDA device this machine
        does not have, with what to pass instead.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0]
        raise ValueError(
            f"device={device!r} is not a device torch knows ({first_line}); use 'auto', 'cpu' or 'cuda'."
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(
                f"device={device!r} but {why}; use device='auto' (CUDA when available, else CPU) or 'cpu'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"numbered from 0; use device='auto' or 'cuda:0'."
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} but Apple's MPS is not available here; use device='auto' or 'cpu'.")
    return resolved


# --------------------------------------------------------------- precision
def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (on the CPU: AVX512_BF16
    or AMX; elsewhere bfloat16 is emulated, many times slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def check_precision(precision: Any, device: torch.device) -> None:
    """Raise a ValueError unless ``precision`` is known and fast on ``device``.

    Examples
    --------
    >>> check_precision("float32", torch.device("cpu"))
    >>> check_precision("float16", torch.device("cpu"))
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: The 'precision' parameter of check_precision must be a str among {'float32', 'bfloat16'}. Got 'float16' instead.
    """
    check_params({"precision": precision}, {"precision": [StrOptions(PRECISIONS)]}, "check_precision")
    # What no constraint can say: whether this hardware computes it natively.
    if precision == "bfloat16" and not native_bfloat16(device):
        where = "this CPU has neither AVX512_BF16 nor AMX" if device.type == "cpu" else f"{device} lacks it"
        raise ValueError(
            f"precision='bfloat16' needs native bfloat16 arithmetic and {where}; emulated bfloat16 is "
            f"many times slower than float32. Use precision='float32'."
        )


def autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """Mixed precision for ``precision`` on ``device``: the weights stay float32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


# ------------------------------------------------------------- threading
def decode_workers(num_workers: int | None) -> int:
    """Decoding threads: ``num_workers``, or by default as many as torch has
    threads, which joblib lowers in its workers so that ``n_jobs`` processes
    do not oversubscribe the cores."""
    return num_workers or max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


def iter_batches(
    indices: Iterable[int], prepare: Callable[[int], T], batch_size: int, workers: int
) -> Iterator[tuple[list[int], list[T]]]:
    """Run ``prepare(i)`` in threads and yield the results in order, in batches.

    Work runs a bounded window (two batches) ahead of the consumer, so
    decoding overlaps whatever the consumer does with the previous batch,
    and memory stays bounded on long lists. An exception from ``prepare``
    is raised when its batch is reached; later work is cancelled.

    Examples
    --------
    >>> [rows for rows, _ in iter_batches(range(5), lambda i: i * i, 2, workers=2)]
    [[0, 1], [2, 3], [4]]
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[tuple[int, Future[T]]] = deque()
        todo = iter(indices)
        try:
            while True:
                while len(pending) < 2 * batch_size and (i := next(todo, None)) is not None:
                    pending.append((i, pool.submit(prepare, i)))
                if not pending:
                    return
                batch = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
                yield [i for i, _ in batch], [future.result() for _, future in batch]
        finally:
            for _, future in pending:
                future.cancel()


# ----------------------------------------------------------- preprocessing
def resize_short_side(image: Image.Image, preprocessing: Preprocessing) -> Image.Image:
    """The preset's first step: the shorter side to ``resize_size``."""
    interpolation = InterpolationMode(preprocessing.interpolation)
    return F.resize(image, [preprocessing.resize_size], interpolation=interpolation, antialias=True)


def crop_pixels(
    image: Image.Image, preprocessing: Preprocessing, *, resized: bool = False, squash: bool = False
) -> np.ndarray:
    """The network's view of one RGB image as uint8 pixels (crop, crop, 3).

    Resize (skipped when ``resized``: the image came from
    :func:`resize_short_side`) and centre crop, as the preset does them.
    ``squash`` instead resizes the whole image to the crop's square,
    ignoring its aspect ratio, so that nothing near the border is lost
    (:func:`skorchlite.duplicates.find_duplicates` compares whole images).
    """
    if squash:
        interpolation = InterpolationMode(preprocessing.interpolation)
        side = [preprocessing.crop_size] * 2
        return np.asarray(F.resize(image, side, interpolation=interpolation, antialias=True))
    if not resized:
        image = resize_short_side(image, preprocessing)
    return np.asarray(F.center_crop(image, [preprocessing.crop_size]))


def to_input(
    pixels: Sequence[np.ndarray], preprocessing: Preprocessing, device: torch.device, *, normalize: bool = True
) -> torch.Tensor:
    """A float32 batch (N, 3, H, W) in channels-last memory from uint8 crops.

    ``normalize=False`` stops at [0, 1] pixels, for networks that normalise
    inside their own graph (:mod:`skorchlite.inspect`).
    """
    batch = torch.from_numpy(np.stack(pixels)).to(device, non_blocking=True)
    # NHWC seen as NCHW is channels-last memory already; to() keeps it. In
    # place from here: the same arithmetic as the preset, one allocation.
    x = batch.permute(0, 3, 1, 2).to(torch.float32).div_(255)
    if normalize:
        mean = torch.tensor(preprocessing.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std = torch.tensor(preprocessing.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        x.sub_(mean).div_(std)
    return x


@dataclass(frozen=True)
class Prepared:
    """One sample ready for a batch: its content key (when asked for), its
    uint8 crop, the decoded RGB image (when asked for) and that image's
    ``(width, height)``."""

    key: str | None
    pixels: np.ndarray
    image: Image.Image | None
    size: tuple[int, int]


def prepared_batches(
    samples: Sequence[Sample],
    rows: Iterable[int],
    preprocessing: Preprocessing,
    *,
    batch_size: int,
    workers: int,
    first_index: int = 0,
    keyed: bool = False,
    keep_images: bool = False,
    squash: bool = False,
) -> Iterator[tuple[list[int], list[Prepared]]]:
    """Decode and crop ``samples[row]`` for ``rows`` in threads, in order.

    ``keyed`` also returns each sample's content key, computed from the
    same bytes as its pixels; ``first_index`` is the position of
    ``samples[0]`` in the caller's X, for error messages; ``squash`` is
    :func:`crop_pixels`'s.
    """

    def prepare(row: int) -> Prepared:
        index = first_index + row
        if keyed:
            key, image = load_keyed(samples[row], index)
        else:
            key, image = None, load_rgb(samples[row], index)
        pixels = crop_pixels(image, preprocessing, squash=squash)
        return Prepared(key, pixels, image if keep_images else None, image.size)

    yield from iter_batches(rows, prepare, batch_size, workers)


def embed(
    network: nn.Module,
    samples: Sequence[Sample],
    rows: Iterable[int],
    preprocessing: Preprocessing,
    *,
    batch_size: int,
    device: torch.device,
    precision: str = "float32",
    workers: int,
    first_index: int = 0,
    mirror: bool = False,
) -> Iterator[tuple[list[int], list[str], np.ndarray]]:
    """Run ``network`` over ``samples[row]`` for ``rows``, in order.

    Yields ``(rows, keys, outputs)`` per batch: the content key of each
    image read from the very bytes that were decoded, and float32 outputs.
    ``rows`` may be a lazy iterable (the extractor claims rows in the cache
    just before they are decoded). ``mirror`` averages each output with
    that of the image flipped left to right (test-time augmentation, at
    twice the network time).
    """
    with freed_memory_kept(), torch.inference_mode(), autocast(device, precision):
        batches = prepared_batches(
            samples, rows, preprocessing, batch_size=batch_size, workers=workers, first_index=first_index, keyed=True
        )
        for batch_rows, items in batches:
            inputs = to_input([item.pixels for item in items], preprocessing, device)
            outputs = network(inputs)
            if mirror:
                outputs = (outputs + network(inputs.flip(3))) / 2
            yield batch_rows, [item.key for item in items], outputs.float().cpu().numpy()  # type: ignore[misc]


# --------------------------------------------------- fine-tuning inputs
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
