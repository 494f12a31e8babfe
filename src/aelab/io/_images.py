"""Read a folder of PNG/JPEG images into one uint8 array."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..exceptions import DataError, require
from ._common import IMAGE_EXTENSIONS

_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"}


def read_image_folder(path: str | os.PathLike) -> np.ndarray:
    """Read every ``.png``/``.jpg``/``.jpeg`` file in ``path`` (not recursive), sorted by name.

    Returns ``(n, height, width)`` uint8 when every image is grayscale, otherwise
    ``(n, height, width, 3)`` uint8 RGB (grayscale images are then expanded to RGB
    and an alpha channel is dropped). Other files in the folder are ignored.
    """
    Image = require("PIL.Image", "io", "reading a folder of images")
    folder = Path(path)
    try:
        entries = sorted(os.listdir(folder))
    except OSError as exc:
        raise DataError(f"cannot list the image folder {str(folder)!r}: {exc.strerror or exc}.") from exc
    files = [folder / name for name in entries if Path(name).suffix.lower() in IMAGE_EXTENSIONS]
    files = [f for f in files if f.is_file() and not f.name.startswith(".")]
    if not files:
        shown = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "") if entries else "nothing"
        raise DataError(
            f"the folder {str(folder)!r} holds no {'/'.join(IMAGE_EXTENSIONS)} images (it contains: {shown}). "
            "Point to a folder of images or to a data file."
        )
    images, gray = [], True
    for file in files:
        try:
            with Image.open(file) as im:
                im.load()
                gray = gray and im.mode in _GRAY_MODES
                images.append(im.copy())
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"cannot read the image {str(file)!r}: {exc}. Remove or replace this file.") from exc
    size = images[0].size
    for file, im in zip(files, images, strict=True):
        if im.size != size:
            raise DataError(
                f"images in {str(folder)!r} must all have one size: {files[0].name!r} is "
                f"{size[0]}x{size[1]} (width x height) but {file.name!r} is {im.size[0]}x{im.size[1]}. "
                "Resize or remove the odd image."
            )
    mode = "L" if gray else "RGB"
    return np.stack([np.asarray(im.convert(mode), dtype=np.uint8) for im in images])
