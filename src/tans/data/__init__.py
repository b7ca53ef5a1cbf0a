"""Datasets: the one Dataset type, loaders for user data, built-in offline sources."""

from typing import TYPE_CHECKING, Unpack

from tans.data.dataset import Dataset, stratified_split
from tans.data.sampling import balanced_indices
from tans.data.transforms import WorkingFormat, to_working

if TYPE_CHECKING:
    from tans.data.loaders._common import LoadOptions

__all__ = ["Dataset", "WorkingFormat", "balanced_indices", "load_dataset", "stratified_split", "to_working"]


def load_dataset(name_or_path: str, **options: Unpack["LoadOptions"]) -> Dataset:
    """Load a built-in task by name, or a user dataset from a path.

    Parameters
    ----------
    name_or_path : str
        A built-in task name (see ``tans data list``), or a path to an ImageFolder directory,
        a ``.zip`` of one, a ``.npz`` file or an MNIST IDX file.
    **options
        For a path: ``image_size``, ``channels``, ``name``, ``max_pixels``, as
        :func:`tans.data.loaders.load_imagefolder` takes them.

    Raises
    ------
    DatasetError
        When the path does not exist and the name is not a built-in task.
    """
    from pathlib import Path

    from tans._errors import DatasetError, did_you_mean
    from tans.data import catalogue
    from tans.data.loaders import load_path

    path = Path(name_or_path).expanduser()
    if path.exists():
        return load_path(path, **options)
    names = [t.name for t in catalogue.list_tasks()]
    if name_or_path in names:
        return catalogue.load_builtin(name_or_path)
    looks_like_path = any(sep in name_or_path for sep in ("/", "\\")) or path.suffix != ""
    if looks_like_path:
        raise DatasetError(
            f"No such file or directory: '{name_or_path}'; expected an ImageFolder directory, a .zip, "
            "a .npz or an MNIST IDX file. Check the path."
        )
    raise DatasetError(
        f"'{name_or_path}' is neither an existing path nor a built-in task name."
        f"{did_you_mean(name_or_path, names)} Run 'tans data list' to see the built-in tasks."
    )
