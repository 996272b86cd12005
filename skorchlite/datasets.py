"""Image datasets as (paths, labels), ready for scikit-learn."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "load_image_folder"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

# How many skipped files the warning names; the count covers all of them.
_NAMED_SKIPPED = 5


def load_image_folder(root: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Read a folder with one sub-folder of images per class.

    Image files are recognised by extension (``IMAGE_EXTENSIONS``, any case).
    Hidden files and folders (names starting with '.') are skipped silently;
    other files that cannot be used (not images, or directly in ``root``
    with no class) are skipped with a warning.

    Parameters
    ----------
    root : str or path-like
        The folder; each sub-folder's name is the label of its images.

    Returns
    -------
    paths : list of str
        ``str(Path(root) / class_name / file_name)`` for each image, sorted
        by class name, then file name.
    labels : list of str
        The class name of each image.

    Raises
    ------
    ValueError
        When ``root`` does not exist or is not a directory, has no class
        folders, or a class folder has no images.

    Warns
    -----
    UserWarning
        When files were skipped, with their count and the first few names.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> tmp = tempfile.TemporaryDirectory()
    >>> for name in ("cat/1.png", "cat/2.png", "dog/1.jpg"):
    ...     (Path(tmp.name) / name).parent.mkdir(exist_ok=True)
    ...     Image.new("RGB", (8, 8)).save(Path(tmp.name) / name)
    >>> paths, labels = load_image_folder(tmp.name)
    >>> labels
    ['cat', 'cat', 'dog']
    >>> [Path(p).name for p in paths]
    ['1.png', '2.png', '1.jpg']
    >>> tmp.cleanup()
    """
    root = Path(root)
    if not root.exists():
        raise ValueError(f"Image folder {str(root)!r} does not exist.")
    if not root.is_dir():
        raise ValueError(f"Image folder {str(root)!r} is not a directory.")
    class_dirs: list[Path] = []
    skipped: list[Path] = []  # files directly in root have no class
    for entry in _visible(root):
        (class_dirs if entry.is_dir() else skipped).append(entry)
    if not class_dirs:
        raise ValueError(
            f"Image folder {str(root)!r} has no class folders; expected one sub-folder of images "
            f"per class, e.g. {str(root / 'cat' / '1.png')!r}."
        )
    paths: list[str] = []
    labels: list[str] = []
    for class_dir in class_dirs:
        images: list[Path] = []
        for entry in _visible(class_dir):
            (images if _is_image(entry) else skipped).append(entry)
        if not images:
            raise ValueError(
                f"Class folder {str(class_dir)!r} has no images (recognised extensions: "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))})."
            )
        paths += [str(image) for image in images]
        labels += [class_dir.name] * len(images)
    if skipped:
        named = ", ".join(repr(str(entry.relative_to(root))) for entry in skipped[:_NAMED_SKIPPED])
        warnings.warn(
            f"Image folder {str(root)!r}: skipped {len(skipped)} of its entries, which are not image "
            f"files inside a class folder: {named}{', ...' if len(skipped) > _NAMED_SKIPPED else ''}",
            UserWarning,
            stacklevel=2,
        )
    return paths, labels


def _visible(folder: Path) -> list[Path]:
    """Entries not hidden, sorted by name so that results do not depend on the filesystem."""
    entries = (entry for entry in folder.iterdir() if not entry.name.startswith("."))
    return sorted(entries, key=lambda entry: entry.name)


def _is_image(entry: Path) -> bool:
    return entry.suffix.lower() in IMAGE_EXTENSIONS and entry.is_file()
