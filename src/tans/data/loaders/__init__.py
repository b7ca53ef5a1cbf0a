"""Load a user's labelled images from disk into a :class:`~tans.data.dataset.Dataset`.

Accepted inputs (:func:`load_path` picks the loader from what the path is):

- an **ImageFolder** directory ``root/<class>/<image>``, or ``root/{train,val,test}/<class>/<image>``
  for a fixed split (:func:`load_imagefolder`);
- a **.zip** of such a folder, extracted safely into the tans cache (:func:`load_zip`), or read in
  place without extracting (:func:`read_zip`);
- a NumPy **.npz** with ``x`` and ``y`` and optionally ``class_names`` (:func:`load_npz`);
- **MNIST IDX** files, gzipped or raw (:func:`load_idx`).

Every dataset gets ``family="user"``, ``licence="unknown (user data)"``, its absolute path as
``source`` and the folder or file stem as ``name``, unless the folder holds a ``dataset.json``
written by :func:`tans.data.writers.write_dataset`, whose name, family, licence, class order and
image order are then restored so that writing and reading back gives the same dataset.

Unreadable files inside an otherwise good dataset are skipped and counted in one
:class:`~tans._errors.TansWarning`; everything that leaves no usable dataset raises a one-line
:class:`~tans.errors.DatasetError` saying what was expected, what arrived and how to fix it.
"""

from tans.data.loaders._common import (
    ACCEPTED_FORMATS,
    META_FILE,
    META_FORMAT,
    META_VERSION,
    NPZ_FILE,
    USER_FAMILY,
    USER_LICENCE,
    ArrayOptions,
    LoadOptions,
    read_meta,
    require_path,
)
from tans.data.loaders.archive import MAX_ZIP_BYTES, ZipTree, extract_zip, load_zip, read_zip
from tans.data.loaders.dispatch import load_path, path_kind
from tans.data.loaders.folder import (
    CARVE_FRACTION,
    MIXED_SIZE_DEFAULT,
    ClassFolder,
    FolderScan,
    load_imagefolder,
    scan_imagefolder,
)
from tans.data.loaders.idx import MAX_IDX_BYTES, find_idx_labels, load_idx, read_idx, read_idx_arrays
from tans.data.loaders.npz import load_npz, read_npz_arrays

__all__ = [
    "ACCEPTED_FORMATS",
    "ArrayOptions",
    "ClassFolder",
    "FolderScan",
    "LoadOptions",
    "ZipTree",
    "extract_zip",
    "find_idx_labels",
    "load_idx",
    "load_imagefolder",
    "load_npz",
    "load_path",
    "load_zip",
    "path_kind",
    "read_idx",
    "read_idx_arrays",
    "read_meta",
    "read_npz_arrays",
    "read_zip",
    "require_path",
    "scan_imagefolder",
]
