"""The searcher artifact on disk: one directory with a JSON config and a safetensors file.

Layout::

    <path>/
        searcher.json          {"format": "tans-searcher", "format_version": 2, "weights_sha256": ...,
                                 "params": ..., "extractor": ..., ...}
        searcher.safetensors   every tensor (extractor, encoders, predictor), names prefixed

The JSON names the format version; :func:`load_artifact` refuses any other version with a message
that says how to get a compatible artifact, and checks the weights against their recorded sha256.
Weights are never pickled. ``<path>`` is a local folder or an fsspec URL (:mod:`tans._remote`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load

from tans import _remote
from tans._errors import SearchError
from tans._json import dumps
from tans.zoo.store import serialize_safetensors

__all__ = ["FORMAT", "FORMAT_VERSION", "CONFIG_NAME", "WEIGHTS_NAME", "save_artifact", "load_artifact", "is_artifact"]

FORMAT = "tans-searcher"
FORMAT_VERSION = 3  # 2: stage 2's combiner keeps a level and an order; 3: the order is a fixed blend of z-scores
CONFIG_NAME = "searcher.json"
WEIGHTS_NAME = "searcher.safetensors"


def is_artifact(path: _remote.Location) -> bool:
    """Whether ``path`` (a folder or URL) holds a searcher artifact (of any version)."""
    return _remote.is_file(_remote.join(path, CONFIG_NAME))


def save_artifact(path: _remote.Location, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path | str:
    """Write a searcher artifact.

    Parameters
    ----------
    path : str or Path
        Directory to write. An existing artifact there is replaced in one step (the new one is
        written to a folder beside it and swapped in), so readers see the old pair or the new one.
        An fsspec URL gets the two files uploaded.
    config : dict
        JSON-able settings and metadata; ``format``, ``format_version`` and ``weights_sha256``
        are added.
    tensors : dict of str to torch.Tensor
        Every weight of the searcher.

    Returns
    -------
    Path or str
        The directory, or its URL.

    Raises
    ------
    SearchError
        If ``path`` is a file, a folder holding other files than an artifact's, or a URL that
        cannot be written.
    """
    data = serialize_safetensors(tensors, {"format": FORMAT})
    with _remote.new_folder(path, replaces=(CONFIG_NAME, WEIGHTS_NAME)) as tmp:
        (tmp / WEIGHTS_NAME).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        full = {"format": FORMAT, "format_version": FORMAT_VERSION, "weights_sha256": digest, **config}
        (tmp / CONFIG_NAME).write_text(dumps(full, indent=2, digits=None) + "\n", encoding="utf-8")
    return _remote.normalize(path)


def load_artifact(path: _remote.Location) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a searcher artifact written by :func:`save_artifact`.

    Parameters
    ----------
    path : str or Path
        The artifact directory, or its URL.

    Returns
    -------
    (dict, dict)
        The JSON config and the tensors (on the CPU).

    Raises
    ------
    SearchError
        If the directory holds no artifact, the JSON is unreadable, the format or its version
        differs from this tans's, or the weights are missing or were modified.
    """
    root, config_path = _remote.normalize(path), _remote.join(path, CONFIG_NAME)
    if not _remote.is_file(config_path):
        raise SearchError(
            f"No searcher at '{root}' (expected {CONFIG_NAME} there); create one with "
            "`tans meta-train --zoo DIR --out PATH` or `tans demo`."
        )
    try:
        config = json.loads(_remote.read_bytes(config_path).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SearchError(f"The searcher config '{config_path}' is unreadable ({exc}); re-run `tans meta-train`.") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise SearchError(
            f"'{config_path}' is not a tans searcher (format {config.get('format') if isinstance(config, dict) else None!r}, "
            f"expected '{FORMAT}')."
        )
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise SearchError(
            f"The searcher at '{root}' has format version {version!r}; this tans reads version {FORMAT_VERSION}. "
            "Re-create it with `tans meta-train`, or use the tans version that wrote it."
        )
    weights = _remote.join(path, WEIGHTS_NAME)
    try:
        data = _remote.read_bytes(weights)
    except FileNotFoundError:
        raise SearchError(f"The searcher weights '{weights}' are missing; re-run `tans meta-train`.") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != config.get("weights_sha256"):
        raise SearchError(
            f"The searcher weights '{weights}' were modified (sha256 {digest[:12]}... differs from the recorded "
            f"{str(config.get('weights_sha256'))[:12]}...); re-run `tans meta-train`."
        )
    try:
        tensors = load(data)
    except (SafetensorError, OSError) as exc:
        raise SearchError(f"The searcher weights '{weights}' are damaged ({exc}); re-run `tans meta-train`.") from None
    return config, tensors
