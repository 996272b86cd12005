"""The one input layer: validate image containers, key and decode samples.

Every other module goes through these functions, so that all inputs (paths,
PIL images, arrays) are checked, hashed and turned into RGB the same way.

Only regular files are read (a FIFO or a device is an error, never a hang).
Three limits bound what one sample may cost, each raisable for inputs you
trust: :data:`MAX_FILE_BYTES` (file size), :data:`MAX_ASPECT_RATIO` (longer
side over shorter) and Pillow's ``PIL.Image.MAX_IMAGE_PIXELS``.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .files import FileTooLargeError, NotRegularFileError, open_regular, read_limited
from .memo import ContentMemo
from .pixels import check_finite, to_rgb

__all__ = ["Sample", "check_images", "content_key", "describe", "load_keyed", "load_rgb"]

Sample = Path | Image.Image | np.ndarray

_EXTERNAL_FORMATS = frozenset({"EPS"})
_POSTSCRIPT_SIGNATURES = (b"%!PS", b"\xc5\xd0\xd3\xc6")  # text, and DOS EPS binary
_CHANNELS = (1, 3, 4)
_UNSUPPORTED_DTYPE = "convert it to uint8 (0-255) or to float in [0, 1]"

# The most bytes one image file may hold: only regular files are read, and
# this bounds the memory of each read. 1 GiB holds any uncompressed 16-bit
# RGBA image under Pillow's decompression-bomb warning. Raise it (for
# files you trust) by assigning skorchlite.images.MAX_FILE_BYTES.
MAX_FILE_BYTES = 1 << 30

# The longest side may be at most this many times the shorter one: the
# resize to the network's input scales the shorter side up to a few hundred
# pixels, so the longer one grows by as much (a 2,000,000 x 1 PNG of 2 KB
# would need ~32 GB). At 100 the resized image of the default preprocessing
# stays under 7 million pixels; real panoramas and scans are well within it.
MAX_ASPECT_RATIO = 100

# Fast path of content_key; bounds the memory of long-lived processes
# (about 50 MB at this size).
_KEYS = ContentMemo(maxsize=100_000)


def check_images(X: Any) -> list[Sample]:
    """Validate a container of images and split it into samples.

    Files are not opened here (that is slow): a missing or unreadable file is
    reported by :func:`content_key` or :func:`load_rgb`.

    Parameters
    ----------
    X : list, tuple, numpy array, pandas Series or one-column DataFrame
        Paths (str or path-like), PIL images, arrays of shape (H, W) or
        (H, W, C) with C in 1, 3, 4 (mixed freely in a list or object array,
        also of shape (N, 1)), or one array of shape (N, H, W) or (N, H, W, C). Arrays are uint8, or
        float with values in [0, 1] (converted by ``round(x * 255)``).

    Returns
    -------
    list
        One sample per image, in order: a :class:`pathlib.Path`, a PIL image,
        or a uint8 array of shape (H, W) or (H, W, C).

    Raises
    ------
    ValueError, TypeError
        For an empty or unsupported container, or a sample that is not an
        image; the message names the sample and the cause.

    Examples
    --------
    >>> import numpy as np
    >>> samples = check_images(np.zeros((2, 8, 8, 3), dtype=np.float32))
    >>> len(samples), samples[0].shape, samples[0].dtype
    (2, (8, 8, 3), dtype('uint8'))
    >>> check_images(["cat (1).png"])[0].name
    'cat (1).png'
    """
    if isinstance(X, (str, os.PathLike)):
        raise TypeError(f"X is a single path ({os.fspath(X)!r}); wrap it in a list: [X].")
    if isinstance(X, Image.Image):
        raise TypeError("X is a single PIL image; wrap it in a list: [X].")
    if _is_tensor(X):
        raise TypeError(
            "X is a torch tensor; pass a numpy array: X.cpu().numpy() for (N, H, W, C), or "
            "X.permute(0, 2, 3, 1).cpu().numpy() for (N, C, H, W) (uint8, or float in [0, 1])."
        )
    if hasattr(X, "to_numpy"):  # a pandas Series or DataFrame, without importing pandas
        X = X.to_numpy()
    if isinstance(X, np.ndarray) and X.dtype.kind in "OUS" and X.ndim == 2 and X.shape[1] == 1:
        X = X[:, 0]  # one column of paths or images, as ColumnTransformer(..., ["path"]) passes it
    if not isinstance(X, (list, tuple, np.ndarray)) or getattr(X, "ndim", 1) == 0:
        raise TypeError(f"X must be a list, tuple, numpy array or pandas Series of images; got {type(X).__name__}.")
    if len(X) == 0:
        raise ValueError("X is empty: no images were given.")
    if isinstance(X, np.ndarray):
        _check_array_container(X)
    return [_check_sample(sample, i) for i, sample in enumerate(X)]


def content_key(sample: Sample, index: int) -> str:
    """Identify the content of one sample by a hex digest.

    Parameters
    ----------
    sample : pathlib.Path, PIL image or numpy array
        One sample from :func:`check_images`.
    index : int
        Its position in X, for error messages.

    Returns
    -------
    str
        64 hex characters (blake2b, 32 bytes). A file is keyed by its bytes,
        a PIL image by the RGB pixels :func:`load_rgb` makes of it, an array
        by its dtype, shape and pixels; each kind is prefixed so that two
        kinds never share a key.

    Raises
    ------
    ValueError
        When a file does not exist or cannot be read.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((4, 4, 3), dtype=np.uint8)
    >>> key = content_key(a, 0)
    >>> len(key), key == content_key(a.copy(), 0)
    (64, True)
    """
    if isinstance(sample, Path):
        return _file_key(sample, index)
    if isinstance(sample, Image.Image):
        # The raw bytes alone would miss the palette, transparency and EXIF
        # orientation, all of which change the pixels the network sees.
        return _rgb_key(load_rgb(sample, index))
    digest = hashlib.blake2b(digest_size=32)
    if isinstance(sample, np.ndarray):
        digest.update(f"array:{sample.dtype.str}:{sample.shape}:".encode())
        digest.update(np.ascontiguousarray(sample).data)
    else:
        raise _unsupported(sample, index)
    return digest.hexdigest()


def load_rgb(sample: Sample, index: int) -> Image.Image:
    """Decode one sample to an upright RGB image, the way a viewer shows it.

    EXIF orientation is applied; grayscale is replicated to three channels;
    16-bit images are scaled by 255/65535; float ('F') images are read as
    [0, 1] when their maximum is at most 1, else clipped to 0-255;
    transparent images (RGBA, LA, palette or grayscale with transparency,
    4-channel arrays) are composited onto white; palette and CMYK images are
    converted by Pillow.

    Parameters
    ----------
    sample : pathlib.Path, PIL image or numpy array
        One sample from :func:`check_images`.
    index : int
        Its position in X, for error messages.

    Returns
    -------
    PIL.Image.Image
        A loaded image of mode 'RGB', never the caller's own object.

    Raises
    ------
    ValueError
        When the file does not exist or is not a regular file (a FIFO, a
        device; checked on the opened file), holds more than
        ``MAX_FILE_BYTES``, is not an image, is truncated or corrupt, has
        zero size, is longer than ``MAX_ASPECT_RATIO`` times its width (or
        the reverse), or exceeds Pillow's decompression-bomb limit.

    Examples
    --------
    >>> import numpy as np
    >>> rgba = np.zeros((2, 3, 4), dtype=np.uint8)  # fully transparent
    >>> image = load_rgb(rgba, 0)
    >>> image.mode, image.size, image.getpixel((0, 0))
    ('RGB', (3, 2), (255, 255, 255))
    """
    if isinstance(sample, Path):
        return _decode_file(_read_bytes(sample, index), sample, index)
    if isinstance(sample, Image.Image):
        with _decoding(sample, index):
            # Returns a copy, so the caller's image is never modified.
            image = ImageOps.exif_transpose(sample)
    elif isinstance(sample, np.ndarray):
        image = Image.fromarray(sample[..., 0] if sample.shape[2:] == (1,) else sample)
    else:
        raise _unsupported(sample, index)
    return _checked_rgb(image, sample, index)


def load_keyed(sample: Sample, index: int) -> tuple[str, Image.Image]:
    """The content key and the RGB image of one sample, from one read.

    A file is read once and both the key and the pixels come from those
    bytes, so a file replaced while a job runs can never pair one
    content's key with another content's pixels.

    Parameters
    ----------
    sample : pathlib.Path, PIL image or numpy array
        One sample from :func:`check_images`.
    index : int
        Its position in X, for error messages.

    Returns
    -------
    key : str
        As :func:`content_key` computes it for the same content.
    image : PIL.Image.Image
        As :func:`load_rgb` returns it.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((4, 4, 3), dtype=np.uint8)
    >>> key, image = load_keyed(a, 0)
    >>> key == content_key(a, 0), image.size
    (True, (4, 4))
    """
    if isinstance(sample, Path):
        data = _read_bytes(sample, index)
        return _bytes_key(data), _decode_file(data, sample, index)
    if isinstance(sample, Image.Image):
        image = load_rgb(sample, index)
        return _rgb_key(image), image
    return content_key(sample, index), load_rgb(sample, index)


def describe(sample: Any, index: int) -> str:
    """Name one sample in messages.

    Parameters
    ----------
    sample : object
        One element of X or one sample from :func:`check_images`.
    index : int
        Its position in X.

    Returns
    -------
    str
        The index with the path, the PIL image's mode and size, the array's
        shape, or the type of anything else.

    Examples
    --------
    >>> from pathlib import Path
    >>> describe(Path("/data/benign (1).png"), 3)
    "sample 3 ('/data/benign (1).png')"
    >>> import numpy as np
    >>> describe(np.zeros((32, 32, 3)), 3)
    'sample 3 (array of shape (32, 32, 3))'
    """
    if isinstance(sample, (str, os.PathLike)):
        what = repr(os.fspath(sample))
    elif isinstance(sample, Image.Image):
        what = f"PIL image, mode {sample.mode!r}, size {sample.width}x{sample.height}"
    elif isinstance(sample, np.ndarray):
        what = f"array of shape {sample.shape}"
    else:
        what = type(sample).__name__
    return f"sample {index} ({what})"


def _check_array_container(X: np.ndarray) -> None:
    """Checks of an array X as a whole, before it is split into samples."""
    if X.dtype.kind in "OUS":  # one path, image or array per element
        if X.ndim != 1:
            raise ValueError(
                f"X is an array of shape {X.shape}; expected a 1-D sequence of images (or one column: "
                f"select the column of images, e.g. df['path'])."
            )
    elif X.ndim == 1:
        raise ValueError(
            f"X is a 1-D {X.dtype} array of length {len(X)}, not a sequence of images; "
            f"expected (N, H, W) or (N, H, W, C)."
        )
    elif X.ndim == 2:
        raise ValueError(
            f"X is a 2-D array of shape {X.shape}: a single image? Use X[None] to pass one "
            f"image; expected (N, H, W) or (N, H, W, C)."
        )
    elif X.ndim > 4:
        raise ValueError(f"X has shape {X.shape} ({X.ndim} dimensions); expected (N, H, W) or (N, H, W, C).")


def _check_sample(sample: Any, index: int) -> Sample:
    if isinstance(sample, (str, os.PathLike)):
        path = os.fspath(sample)
        if not isinstance(path, str):
            raise TypeError(f"{describe(sample, index)}: bytes paths are not supported; use str.")
        if not path:
            raise ValueError(f"sample {index}: the path is an empty string.")
        return Path(path)
    if isinstance(sample, Image.Image):
        _check_size(sample.size, sample, index)
        return sample
    if isinstance(sample, np.ndarray):
        return _check_array(sample, index)
    if _is_tensor(sample):
        raise TypeError(
            f"{describe(sample, index)}: a torch tensor; pass a numpy array: image.cpu().numpy() for "
            f"(H, W, C), or image.permute(1, 2, 0).cpu().numpy() for (C, H, W)."
        )
    raise _unsupported(sample, index)


def _is_tensor(obj: Any) -> bool:
    # By module, so that torch need not be imported here.
    return type(obj).__module__.split(".")[0] == "torch"


def _check_array(array: np.ndarray, index: int) -> np.ndarray:
    name = describe(array, index)
    if array.ndim not in (2, 3):
        raise ValueError(f"{name}: an image array must have shape (H, W) or (H, W, C).")
    if array.ndim == 3 and array.shape[2] not in _CHANNELS:
        hint = " Channels first? Use np.moveaxis(image, 0, -1)." if array.shape[0] in _CHANNELS else ""
        raise ValueError(f"{name}: {array.shape[2]} channels; expected 1 (grey), 3 (RGB) or 4 (RGBA).{hint}")
    if 0 in array.shape:
        raise ValueError(f"{name}: the image has zero size.")
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind != "f":
        raise TypeError(f"{name}: unsupported dtype {array.dtype}; {_UNSUPPORTED_DTYPE}.")
    check_finite(array, name)
    low, high = array.min(), array.max()
    if low < 0 or high > 1:
        raise ValueError(
            f"{name}: float pixels must be in [0, 1], found values from {low:g} to {high:g}; "
            f"divide by 255 if they are 0-255, or convert to uint8."
        )
    # At least float32, so that float16 input does not round at 255 * x.
    scaled = np.multiply(array, 255, dtype=np.result_type(array.dtype, np.float32))
    return np.rint(scaled).astype(np.uint8)


def _check_size(size: tuple[int, int], sample: Any, index: int) -> None:
    if 0 in size:
        raise ValueError(f"{describe(sample, index)}: the image has zero size ({size[0]}x{size[1]}).")
    if max(size) > MAX_ASPECT_RATIO * min(size):
        raise ValueError(
            f"{describe(sample, index)}: the image is {size[0]}x{size[1]}, its "
            f"{'width' if size[0] > size[1] else 'height'} more than "
            f"skorchlite.images.MAX_ASPECT_RATIO = {MAX_ASPECT_RATIO} times its "
            f"{'height' if size[0] > size[1] else 'width'}; resizing its "
            f"shorter side would make an image too large for memory. Crop it first (or raise that "
            f"limit for images you trust)."
        )


def _unsupported(sample: Any, index: int) -> TypeError:
    return TypeError(
        f"{describe(sample, index)}: unsupported type {type(sample).__name__}; expected a path "
        f"(str or path-like), a PIL image or a numpy array."
    )


def _file_key(path: Path, index: int) -> str:
    with _reading(path, index), open_regular(path, MAX_FILE_BYTES) as file:
        # Keyed on the file opened, not on the path: nothing swapped in between.
        if (key := _KEYS.get(file)) is not None:
            return key
        hashed_at = time.time_ns()
        key = _bytes_key(read_limited(file, MAX_FILE_BYTES))
        _KEYS.put(file, key, hashed_at)
    return key


def _bytes_key(data: bytes) -> str:
    digest = hashlib.blake2b(b"file:", digest_size=32)
    digest.update(data)
    return digest.hexdigest()


def _rgb_key(rgb: Image.Image) -> str:
    digest = hashlib.blake2b(f"pil:{rgb.size}:".encode(), digest_size=32)
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def _raster_formats() -> list[str]:
    """Pillow's readers that decode in this process: EPS (and its PostScript)
    would run Ghostscript, an external program, on the file's contents."""
    Image.init()
    return [name for name in Image.OPEN if name not in _EXTERNAL_FORMATS]


def _decode_file(data: bytes, path: Path, index: int) -> Image.Image:
    if data.startswith(_POSTSCRIPT_SIGNATURES):
        raise ValueError(
            f"{describe(path, index)}: a PostScript/EPS file; these are refused, since decoding them runs "
            "Ghostscript, an external program, on the file's contents. Convert it to PNG first."
        )
    with _decoding(path, index):
        image = Image.open(io.BytesIO(data), formats=_raster_formats())
    _check_size(image.size, path, index)  # from the header, before decoding
    with _decoding(path, index):
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
    return _checked_rgb(image, path, index)


def _checked_rgb(image: Image.Image, sample: Sample, index: int) -> Image.Image:
    _check_size(image.size, sample, index)
    return to_rgb(image, describe(sample, index))


def _read_bytes(path: Path, index: int) -> bytes:
    with _reading(path, index), open_regular(path, MAX_FILE_BYTES) as file:
        return read_limited(file, MAX_FILE_BYTES)


@contextmanager
def _reading(path: Path, index: int) -> Iterator[None]:
    """Turn the errors of reading a file into ValueErrors that name the sample."""
    try:
        yield
    except OSError as err:
        raise ValueError(f"{describe(path, index)}: {_read_cause(err)}.") from err


def _read_cause(err: OSError) -> str:
    if isinstance(err, FileNotFoundError):
        return "the file does not exist"
    if isinstance(err, IsADirectoryError):
        return "this is a directory, not an image file"
    if isinstance(err, FileTooLargeError):
        return f"{err.strerror} (skorchlite.images.MAX_FILE_BYTES); raise that limit for files you trust"
    if isinstance(err, NotRegularFileError) or err.errno == errno.EINVAL:
        return str(err.strerror)
    if err.errno == errno.ELOOP:
        return "the path is a loop of symbolic links"
    if err.errno == errno.ENAMETOOLONG:
        return "the path, or a name in it, is too long for the filesystem"
    return f"the file cannot be read ({err})"


@contextmanager
def _decoding(sample: Sample, index: int) -> Iterator[None]:
    """Turn Pillow's decoding errors into ValueErrors that name the sample."""
    name = describe(sample, index)
    try:
        yield
    except Image.DecompressionBombError as err:
        raise ValueError(
            f"{name}: too many pixels, over Pillow's decompression-bomb limit "
            f"(PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}) ({err}). Raise that limit "
            f"only for files you trust."
        ) from err
    except UnidentifiedImageError as err:
        raise ValueError(f"{name}: this is not an image Pillow can read.") from err
    except (OSError, SyntaxError, EOFError, ValueError) as err:
        raise ValueError(f"{name}: the image is truncated or corrupt ({err}).") from err
    except Exception as err:  # noqa: BLE001 - a plugin's own failure, still this sample's
        raise ValueError(f"{name}: Pillow failed to decode it ({type(err).__name__}: {err}).") from err
