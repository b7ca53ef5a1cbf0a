"""Names -> model builders, in the style of timm's registry.

Three kinds of name are understood by :func:`create_model`:

* a registered builder (``mbv3_small``, ``mbv3_median``...): named points of the space;
* any canonical architecture name of the space (``mbv3_w0.75_d2-3-4-2-3_k...``), see
  :mod:`tans.space.arch`;
* ``timm/<name>`` for any timm architecture (``timm/resnet18``), so timm models can be zoo entries.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import socket
from collections.abc import Callable, Iterator

from torch import nn

from tans._errors import TansError, did_you_mean
from tans.space.arch import PREFIX, Arch, parse_arch
from tans.space.mobilenet import MobileNetSpace

__all__ = ["register_model", "list_models", "create_model", "is_model", "resolve_arch", "TIMM_PREFIX"]

TIMM_PREFIX = "timm/"
_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}
_PRESETS: dict[str, Arch] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` as the builder of the model named ``fn.__name__``.

    Raises
    ------
    TansError
        If the name is already registered.
    """
    name = fn.__name__
    if name in _ENTRYPOINTS:
        raise TansError(f"Model '{name}' is already registered; pick another function name.")
    _ENTRYPOINTS[name] = fn
    return fn


def list_models(pattern: str = "*", *, include_timm: bool = False) -> list[str]:
    """Sorted registered names matching a shell-style wildcard ``pattern``.

    Parameters
    ----------
    pattern : str
        e.g. ``"mbv3_*"``.
    include_timm : bool
        Also list timm's architectures, as ``timm/<name>``.
    """
    names = [n for n in _ENTRYPOINTS if fnmatch.fnmatch(n, pattern)]
    if include_timm:
        import timm

        names += [n for n in (TIMM_PREFIX + m for m in timm.list_models()) if fnmatch.fnmatch(n, pattern)]
    return sorted(names)


def is_model(name: str) -> bool:
    """Whether :func:`create_model` can build ``name`` (timm names are checked against timm)."""
    try:
        _check_name(name)
    except TansError:
        return False
    return True


def resolve_arch(name: str) -> Arch | None:
    """The :class:`Arch` behind a registered preset or canonical name; ``None`` for timm models.

    Raises
    ------
    TansError
        If the name is unknown.
    """
    _check_name(name)
    if name in _PRESETS:
        return _PRESETS[name]
    if name.startswith(PREFIX + "_w"):
        return parse_arch(name)
    return None


def create_model(name: str, *, num_classes: int = 10, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build the model called ``name`` with a ``num_classes``-way classifier.

    Parameters
    ----------
    name : str
        A registered name, a canonical architecture name, or ``timm/<architecture>``.
    num_classes : int
        Classifier width (0: no classifier).
    pretrained : bool
        timm models only: load timm's pretrained weights (needs them cached or downloadable).
    **kwargs
        Passed to the builder (e.g. ``drop_rate``).

    Returns
    -------
    nn.Module
        A model with timm's interface.

    Raises
    ------
    TansError
        For an unknown or malformed name, or timm weights that cannot be loaded.
    """
    _check_name(name)
    if name.startswith(TIMM_PREFIX):
        import timm

        try:
            with _hub_offline_unless_reachable(pretrained):
                return timm.create_model(name[len(TIMM_PREFIX) :], pretrained=pretrained, num_classes=num_classes, **kwargs)
        except (RuntimeError, OSError) as exc:
            if not pretrained:
                raise
            raise TansError(
                f"Could not load pretrained weights for '{name}' ({type(exc).__name__}: {exc}); "
                "use pretrained=False or make the weights available in the Hugging Face cache."
            ) from exc
    if pretrained:
        raise TansError(f"'{name}' has no pretrained weights of its own; zoo entries carry trained weights.")
    if name in _ENTRYPOINTS:
        return _ENTRYPOINTS[name](num_classes=num_classes, **kwargs)
    return MobileNetSpace(parse_arch(name), num_classes=num_classes, **kwargs)


@contextlib.contextmanager
def _hub_offline_unless_reachable(pretrained: bool) -> Iterator[None]:
    """Use only the local Hugging Face cache when offline is asked for or the hub cannot be reached.

    Without this, huggingface_hub retries for about a minute per file before failing on a machine
    with no network; with it, a missing cache entry fails at once with a clear error. The hub reads
    HF_HUB_OFFLINE once, at import, so the setting is applied to its constants for the call.
    """
    if not pretrained:
        yield
        return
    from urllib.parse import urlparse

    from huggingface_hub import constants

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not offline:
        url = urlparse(constants.ENDPOINT)
        try:
            socket.create_connection((url.hostname, url.port or 443), timeout=3).close()
        except OSError:
            offline = True
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = before or offline
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise TansError(f"A model name must be a non-empty string, got {name!r}.")
    if name.startswith(TIMM_PREFIX):
        import timm

        arch = name[len(TIMM_PREFIX) :]
        if not timm.is_model(arch):
            raise TansError(f"Unknown timm model '{arch}'." + did_you_mean(arch, timm.list_models()))
        return
    if name in _ENTRYPOINTS:
        return
    if name.startswith(PREFIX + "_w"):
        parse_arch(name)  # raises with the reason
        return
    raise TansError(
        f"Unknown model '{name}': expected a registered name ({', '.join(sorted(_ENTRYPOINTS))}), a canonical "
        f"'{PREFIX}_w..._d..._k..._e...' name, or '{TIMM_PREFIX}<timm name>'." + did_you_mean(name, _ENTRYPOINTS)
    )


def _uniform(width: float, depth: int, kernel: int, expansion: int) -> Arch:
    return Arch(width, ((kernel,) * depth,) * 5, ((expansion,) * depth,) * 5)


def _preset(name: str, arch: Arch) -> None:
    """Register a named point of the space (the builder function is named ``name``)."""

    def builder(*, num_classes: int = 10, **kwargs) -> nn.Module:
        return MobileNetSpace(arch, num_classes=num_classes, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"``{arch.name}``"
    _PRESETS[name] = arch
    register_model(builder)


# named points of the space: the extremes and a few landmarks between them
_preset("mbv3_min", _uniform(0.5, 2, 3, 3))
_preset("mbv3_small", _uniform(0.5, 3, 5, 4))
_preset("mbv3_median", _uniform(0.75, 3, 5, 4))
_preset("mbv3_large", _uniform(1.0, 3, 5, 6))
_preset("mbv3_max", _uniform(1.0, 4, 7, 6))
