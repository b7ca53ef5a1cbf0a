"""Save, load and export a fine-tuned model.

An output directory holds ``model.safetensors`` (the weights) and ``model.json`` (everything needed
to rebuild and use them: architecture, classes, working format, input normalisation, where the
weights came from, how well they did, and the weights' sha256). :func:`load_finetuned` checks the
file against that checksum before rebuilding. :func:`export_onnx` writes the network as an ONNX
graph whose input is the normalised ``(batch, 3, size, size)`` float tensor.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tans._atomic import new_file, new_folder
from tans._errors import TansError, unknown_choice
from tans._json import dumps
from tans.data.transforms import WorkingFormat, resize_images
from tans.training.loop import INPUT_MEAN, INPUT_STD, to_input

if TYPE_CHECKING:
    from tans.finetune.result import FinetuneResult

__all__ = ["FinetunedMeta", "FinetunedModel", "save_finetuned", "load_finetuned", "export_onnx", "check_exporter",
           "EXPORTERS"]

FORMAT = "tans-finetuned"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
META_NAME = "model.json"
ONNX_NAME = "model.onnx"
# Everything 'tans finetune' (--scratch, --onnx) and 'tans demo' put in an output folder: what
# saving a fine-tuned model there again may replace. A folder holding anything else is refused.
OUTPUT_NAMES = (WEIGHTS_NAME, META_NAME, ONNX_NAME, "curves.png", "scratch", "demo.json")
# "torchscript": torch's tracing exporter, needs only the onnx package and takes ~2 s here;
# "dynamo": the torch.export-based one, needs onnxscript too and takes ~20 s on 2 busy cores.
EXPORTERS = ("torchscript", "dynamo")


@dataclass(frozen=True)
class FinetunedMeta:
    """The contents of ``model.json``.

    Parameters
    ----------
    arch : str
        Architecture name that :func:`tans.space.registry.create_model` rebuilds.
    class_names : tuple of str
        Output ``i`` of the classifier is ``class_names[i]``.
    image_size, channels : int
        Working format: images are resized to ``image_size`` square with ``channels`` channels.
    mean, std : float
        Input normalisation ``(pixel / 255 - mean) / std``; grey input is repeated to 3 channels.
    model_id, source_task : str or None
        Zoo entry and task the starting weights came from.
    from_scratch : bool
        Trained from random initialisation.
    dataset, dataset_fingerprint : str
        Dataset the model was trained on.
    results : dict
        Accuracies per epoch and final, chance level, recipe (``FinetuneResult.to_dict``).
    sha256 : str
        Hex sha256 of ``model.safetensors``.
    created, tans_version : str
        UTC time of writing and the tans version that wrote it.
    """

    # the network
    arch: str
    class_names: tuple[str, ...]
    # its input
    image_size: int
    channels: int
    mean: float
    std: float
    # provenance
    model_id: str | None
    source_task: str | None
    from_scratch: bool
    dataset: str
    dataset_fingerprint: str
    results: dict = field(default_factory=dict, repr=False)
    # the file
    sha256: str = ""
    created: str = ""
    tans_version: str = ""
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def working_format(self) -> WorkingFormat:
        return WorkingFormat(self.image_size, self.channels)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["class_names"] = list(self.class_names)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, where: str) -> FinetunedMeta:
        if not isinstance(values, dict) or values.get("format") != FORMAT:
            raise TansError(
                f"expected a {FORMAT} metadata file at {where}, got something else; "
                "point to a 'tans finetune' output directory."
            )
        if values.get("format_version") != FORMAT_VERSION:
            raise TansError(
                f"{where} has format version {values.get('format_version')!r}, this tans reads {FORMAT_VERSION}; "
                "fine-tune again with this version."
            )
        names = {f.name for f in fields(cls)}
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = sorted(n for n in required if n not in values)
        if missing:
            raise TansError(f"{where} lacks the field(s) {missing}; it is damaged or was not written by tans.")
        kwargs = {k: v for k, v in values.items() if k in names}
        kwargs["class_names"] = tuple(kwargs["class_names"])
        return cls(**kwargs)


@dataclass
class FinetunedModel:
    """A fine-tuned model rebuilt from its output directory.

    Attributes
    ----------
    model : nn.Module
        The network, on the CPU in eval mode.
    meta : FinetunedMeta
        What ``model.json`` says about it.
    path : Path
        The output directory.
    """

    model: nn.Module
    meta: FinetunedMeta
    path: Path

    @torch.no_grad()
    def logits(self, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Classifier outputs for uint8 ``(n, h, w, c)`` images of any size.

        Returns
        -------
        np.ndarray
            ``(n, num_classes)`` float32.
        """
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        fmt = self.meta.working_format
        if images.shape[1:] != (fmt.size, fmt.size, fmt.channels):
            images = resize_images(images, fmt.size, fmt.channels)
        self.model.eval()
        out = [self.model(to_input(images[i : i + batch_size])).numpy() for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.meta.num_classes), np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Predicted label (index into ``meta.class_names``) for each uint8 image, as int64 ``(n,)``."""
        return self.logits(images).argmax(1).astype(np.int64)

    def export_onnx(self, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> Path:
        """:func:`export_onnx` of this model at its working size (default ``<dir>/model.onnx``)."""
        return export_onnx(self.model, path or self.path / ONNX_NAME, input_size=self.meta.image_size, **kwargs)


def _tans_version() -> str:
    try:
        from importlib.metadata import version

        return version("tans")
    except Exception:  # noqa: BLE001 - running from a source tree without metadata
        return "unknown"


def save_finetuned(result: FinetuneResult, out_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Write ``model.safetensors`` and ``model.json`` for a :class:`FinetuneResult`.

    Parameters
    ----------
    result : FinetuneResult
        A result that still holds its model.
    out_dir : path
        Created if needed. A folder written by an earlier run is replaced as a whole, in one step:
        readers see the old pair of files or the new one, never a mix (the earlier run's curves,
        ONNX file and ``scratch/`` go with it).

    Returns
    -------
    dict
        ``{"weights": path, "metadata": path}``.

    Raises
    ------
    TansError
        When the result holds no model, or ``out_dir`` is a file or holds files other than
        :data:`OUTPUT_NAMES`.
    """
    from tans.zoo.store import serialize_safetensors

    if result.model is None:
        raise TansError("this FinetuneResult holds no model (it was loaded from JSON?); fine-tune again to save one.")
    data = serialize_safetensors(result.model.state_dict(), {"format": FORMAT, "arch": result.arch})
    meta = FinetunedMeta(
        arch=result.arch,
        class_names=tuple(result.class_names),
        image_size=result.working_format.size,
        channels=result.working_format.channels,
        mean=INPUT_MEAN,
        std=INPUT_STD,
        model_id=result.model_id,
        source_task=result.source_task,
        from_scratch=result.from_scratch,
        dataset=result.dataset,
        dataset_fingerprint=result.dataset_fingerprint,
        results={k: v for k, v in result.to_dict().items() if k != "paths"},
        sha256=hashlib.sha256(data).hexdigest(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        tans_version=_tans_version(),
    )
    with new_folder(out_dir, replaces=OUTPUT_NAMES) as tmp:
        (tmp / WEIGHTS_NAME).write_bytes(data)
        (tmp / META_NAME).write_text(dumps(meta.to_dict(), indent=2, digits=None) + "\n", encoding="utf-8")
    out = Path(out_dir).expanduser()
    return {"weights": str(out / WEIGHTS_NAME), "metadata": str(out / META_NAME)}


def load_finetuned(path: str | os.PathLike[str]) -> FinetunedModel:
    """Rebuild a fine-tuned model from its output directory, after checking the weights' sha256.

    Parameters
    ----------
    path : path
        A directory written by :func:`save_finetuned` (or ``tans finetune --out``).

    Returns
    -------
    FinetunedModel

    Raises
    ------
    TansError
        When a file is missing, the weights were modified, or they do not fit the architecture.
    """
    from safetensors.torch import load

    from tans.space.registry import create_model

    root = Path(path).expanduser()
    meta_path, weights_path = root / META_NAME, root / WEIGHTS_NAME
    if not meta_path.is_file():
        raise TansError(
            f"expected a fine-tuned model directory with {META_NAME} at {root}, found none; "
            "pass the --out directory of 'tans finetune'."
        )
    try:
        values = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TansError(f"{meta_path} is not valid JSON ({exc}); fine-tune again to rewrite it.") from None
    meta = FinetunedMeta.from_dict(values, where=str(meta_path))
    try:
        data = weights_path.read_bytes()
    except FileNotFoundError:
        raise TansError(f"the weights {weights_path} are missing next to {META_NAME}; copy the whole directory.") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.sha256:
        raise TansError(
            f"{weights_path} was modified: sha256 {digest[:12]}... differs from the recorded "
            f"{meta.sha256[:12]}...; restore the file or fine-tune again."
        )
    model = create_model(meta.arch, num_classes=meta.num_classes)
    try:
        model.load_state_dict(load(data), strict=True)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        raise TansError(
            f"the weights in {weights_path} do not fit {meta.arch} with {meta.num_classes} classes "
            f"({(lines[1] if len(lines) > 1 else lines[0]).strip()}); fine-tune again."
        ) from None
    return FinetunedModel(model=model.eval(), meta=meta, path=root)


def check_exporter(exporter: str = "torchscript") -> None:
    """Refuse an unknown ONNX exporter, or one whose packages are not installed (``onnx`` is the
    ``tans[onnx]`` extra), before any work that would end in an export.

    Raises
    ------
    TansError
        Naming the exporters, or the command that installs what is missing.
    """
    if exporter not in EXPORTERS:
        raise unknown_choice("ONNX exporter", exporter, EXPORTERS)
    for package in ["onnx"] + (["onnxscript"] if exporter == "dynamo" else []):
        try:
            __import__(package)
        except ImportError:
            raise TansError(
                f"ONNX export with the {exporter} exporter needs the '{package}' package, which is not installed; "
                "run: pip install 'tans[onnx]'" + (" onnxscript" if exporter == "dynamo" else "") + "."
            ) from None


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    input_size: int = 32,
    *,
    exporter: str = "torchscript",
    opset: int | None = None,
) -> Path:
    """Export ``model`` as an ONNX graph with a dynamic batch dimension.

    The graph's input ``input`` is float32 ``(batch, 3, input_size, input_size)``, normalised as
    ``(pixel / 255 - 0.5) / 0.25`` (the ``mean``/``std`` in ``model.json``); its output ``logits``
    is ``(batch, num_classes)``.

    Parameters
    ----------
    model : nn.Module
        The network (exported on the CPU in eval mode; its mode is restored afterwards).
    path : path
        The ``.onnx`` file to write (one self-contained file).
    input_size : int
        Height and width of the input.
    exporter : str
        ``"torchscript"`` (default: needs the ``onnx`` package, fast) or ``"dynamo"``
        (``torch.export``-based; also needs ``onnxscript``, about ten times slower).
    opset : int or None
        ONNX opset; ``None`` lets torch choose.

    Returns
    -------
    Path
        The ``.onnx`` file written, ``~`` expanded.

    Raises
    ------
    TansError
        For an unknown exporter, a missing exporter package, or a model the exporter cannot trace.
    """
    check_exporter(exporter)
    out = Path(path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    device = next(model.parameters(), torch.empty(0)).device
    model.to("cpu").eval()
    example = torch.zeros(2, 3, input_size, input_size)
    kwargs: dict[str, Any] = {"input_names": ["input"], "output_names": ["logits"], "external_data": False}
    if opset is not None:
        kwargs["opset_version"] = opset
    if exporter == "dynamo":
        kwargs.update(dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    else:
        kwargs.update(dynamo=False, dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    try:
        with torch.no_grad(), warnings.catch_warnings(), new_file(out) as tmp:
            warnings.simplefilter("ignore")  # the torchscript exporter's deprecation notice is known
            torch.onnx.export(model, (example,), str(tmp), **kwargs)
    except Exception as exc:  # noqa: BLE001 - exporters raise many kinds; say which model failed
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TansError(
            f"ONNX export of {type(model).__name__} with the {exporter} exporter failed ({first}); "
            f"try the other one ({' or '.join(e for e in EXPORTERS if e != exporter)})."
        ) from None
    finally:
        model.to(device).train(was_training)
    return out
