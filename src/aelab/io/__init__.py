"""Read and write numeric arrays; stream data larger than memory.

* :func:`read_array` / :func:`write_array`: whole arrays in ``.npy`` (memory-mapped
  on read), ``.npz``, ``.csv``, ``.tsv``, ``.parquet``, ``.h5``/``.hdf5`` and, for
  reading, folders of PNG/JPEG images. Writes are atomic.
* :func:`open_array`: an :class:`ArraySource` read lazily in chunks.
* :func:`write_rows`: a :class:`RowWriter` that streams chunks to a file.

h5py, pyarrow and pillow are optional (``pip install 'aelab[io]'``); a
:class:`~aelab.exceptions.MissingDependencyError` says so when one is needed.
"""

from ._common import IMAGE_EXTENSIONS, READ_EXTENSIONS, WRITE_EXTENSIONS, DataFileNotFoundError
from ._formats import read_array, write_array
from .streaming import CHUNK_BYTES, ArraySource, RowWriter, open_array, write_rows

__all__ = [
    "read_array",
    "write_array",
    "open_array",
    "ArraySource",
    "write_rows",
    "RowWriter",
    "DataFileNotFoundError",
    "READ_EXTENSIONS",
    "WRITE_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "CHUNK_BYTES",
]
