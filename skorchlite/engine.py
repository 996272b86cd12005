"""The engine: the one code path that moves images through a network.

The extractor, the fine-tuner, :mod:`skorchlite.inspect` and
:mod:`skorchlite.dask` all come here for the device, the precision, the
network built for inference (once per process, by :mod:`skorchlite.networks`,
re-exported here), decoding and preprocessing
in threads that overlap the forward pass, batching, mirror test-time
augmentation, and the allocator policy while the work runs; and the
constraints of the parameters both estimators take (:data:`SHARED_CONSTRAINTS`).
So identical settings give identical tensors, whichever caller asks.

Preprocessing is torchvision's ``ImageClassification`` preset, split at the
point where threads help: resizing and cropping run on PIL images in the
decoding threads (Pillow releases the GIL); the crops travel as uint8 and
are scaled and normalised as one batch, already in channels-last memory.
The result is bit-identical to the preset applied image by image.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from numbers import Integral
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
from .networks import (
    POOLINGS,
    GlobalPool,
    PooledNodes,
    Pooling,
    backbone_network,
    embedding_module,
    inference_network,
    linear_layer,
    output_widths,
)
from .validation import Interval, StrOptions, check_params

__all__ = [
    "POOLINGS",
    "PRECISIONS",
    "SHARED_CONSTRAINTS",
    "GlobalPool",
    "PooledNodes",
    "Pooling",
    "Precision",
    "autocast",
    "backbone_network",
    "check_precision",
    "crop_pixels",
    "decode_workers",
    "embed",
    "embedding_module",
    "forward",
    "inference_network",
    "linear_layer",
    "iter_batches",
    "output_widths",
    "prepared_batches",
    "resolve_device",
    "to_input",
]

#: ``precision``: the arithmetic of forward (and backward) passes (autocast).
Precision = Literal["float32", "bfloat16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

#: The constraints of the parameters that both estimators, the extractor and
#: the fine-tuner, take and hand to the engine (or, ``cache`` and
#: ``verbose``, use around it), by name; each estimator's
#: ``_parameter_constraints`` takes these entries (see :mod:`skorchlite.validation`).
SHARED_CONSTRAINTS: dict[str, list[Any]] = {
    "backbone": [str, tuple, list, nn.Module],
    "weights": [str, os.PathLike, None],
    "preprocessing": [Preprocessing, dict, None],
    "tta": ["boolean"],
    "layer": [str, list, tuple, None],
    "image_size": [Interval(Integral, 1, None, closed="left"), None],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    # An int is a CUDA device index, as torch.device takes it.
    "device": [str, torch.device, Interval(Integral, 0, None, closed="left")],
    "precision": [StrOptions(PRECISIONS)],
    "num_workers": [Interval(Integral, 1, None, closed="left"), None],
    "cache": [bool, str, os.PathLike, None],
    "verbose": ["verbose"],
}

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


def forward(
    network: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, *, mirror: bool = False
) -> torch.Tensor:
    """``network``'s outputs on a batch of ``inputs`` (N, 3, H, W).

    ``mirror`` is test-time augmentation: each output averaged with that of
    the image flipped left to right, at twice the network time (every
    mirror TTA of the package runs here).

    Examples
    --------
    >>> x = torch.arange(4.0).view(1, 1, 1, 4)
    >>> forward(lambda t: t[..., 0], x, mirror=True)
    tensor([[[1.5000]]])
    """
    outputs = network(inputs)
    return (outputs + network(inputs.flip(3))) / 2 if mirror else outputs


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
    twice the network time: :func:`forward`).
    """
    with freed_memory_kept(), torch.inference_mode(), autocast(device, precision):
        batches = prepared_batches(
            samples, rows, preprocessing, batch_size=batch_size, workers=workers, first_index=first_index, keyed=True
        )
        for batch_rows, items in batches:
            inputs = to_input([item.pixels for item in items], preprocessing, device)
            outputs = forward(network, inputs, mirror=mirror)
            yield batch_rows, [item.key for item in items], outputs.float().cpu().numpy()  # type: ignore[misc]
