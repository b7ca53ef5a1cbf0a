"""The architecture of one network in the search space, its canonical name and its encoding.

The space follows the paper's OFA MobileNetV3 space: five searchable stages, each with a depth in
{2, 3, 4}; every active block has a depth-wise kernel size in {3, 5, 7} and an expansion ratio in
{3, 4, 6}; one width multiplier scales every layer. Widths, strides and the fixed stem and head are
in :mod:`tans.space.mobilenet`; this module only knows the choices.

Canonical name (parsed by :func:`parse_arch`, written by :meth:`Arch.name`)::

    mbv3_w0.75_d2-3-4-2-3_k35-357-7537-35-333_e34-466-3364-66-346
         │     │           │                   └ expansion ratio of every active block, per stage
         │     │           └ kernel size of every active block, one digit per block, per stage
         │     └ depth of each of the five stages
         └ width multiplier
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tans._errors import TansError, did_you_mean

__all__ = [
    "DEPTHS",
    "EXPANSIONS",
    "KERNELS",
    "MAX_DEPTH",
    "NUM_STAGES",
    "PREFIX",
    "WIDTHS",
    "Arch",
    "encoding_size",
    "parse_arch",
    "short_name",
]

# the choices of the space
KERNELS = (3, 5, 7)
EXPANSIONS = (3, 4, 6)
DEPTHS = (2, 3, 4)
WIDTHS = (0.5, 0.75, 1.0)
NUM_STAGES = 5
MAX_DEPTH = max(DEPTHS)
PREFIX = "mbv3"

_WIDTH_TEXT = {w: repr(w) for w in WIDTHS}  # 0.5 -> "0.5", 1.0 -> "1.0"
_NAME_RE = re.compile(r"^mbv3_w(?P<w>[^_]*)_d(?P<d>[^_]*)_k(?P<k>[^_]*)_e(?P<e>[^_]*)$")


@dataclass(frozen=True)
class Arch:
    """One architecture of the MobileNetV3-style space.

    Parameters
    ----------
    width : float
        Width multiplier, one of :data:`WIDTHS`.
    kernels : tuple of tuple of int
        Per stage, the depth-wise kernel size of each active block (length = stage depth).
    expansions : tuple of tuple of int
        Per stage, the expansion ratio of each active block (same lengths as ``kernels``).

    Raises
    ------
    TansError
        If a choice lies outside the space or the per-stage lengths disagree.
    """

    width: float
    kernels: tuple[tuple[int, ...], ...]
    expansions: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        kernels = tuple(tuple(int(k) for k in stage) for stage in self.kernels)
        expansions = tuple(tuple(int(e) for e in stage) for stage in self.expansions)
        object.__setattr__(self, "kernels", kernels)
        object.__setattr__(self, "expansions", expansions)
        width = float(self.width)
        if width not in WIDTHS:
            raise TansError(f"Width multiplier must be one of {WIDTHS}, got {self.width}.")
        object.__setattr__(self, "width", width)
        if len(kernels) != NUM_STAGES or len(expansions) != NUM_STAGES:
            raise TansError(
                f"An architecture has {NUM_STAGES} stages, got {len(kernels)} kernel groups and "
                f"{len(expansions)} expansion groups."
            )
        for s, (ks, es) in enumerate(zip(kernels, expansions)):
            if len(ks) not in DEPTHS or len(ks) != len(es):
                raise TansError(
                    f"Stage {s + 1}: expected a depth in {DEPTHS} with one kernel and one expansion per "
                    f"block, got {len(ks)} kernels and {len(es)} expansions."
                )
            bad_k = [k for k in ks if k not in KERNELS]
            bad_e = [e for e in es if e not in EXPANSIONS]
            if bad_k:
                raise TansError(f"Stage {s + 1}: kernel sizes must be in {KERNELS}, got {bad_k}.")
            if bad_e:
                raise TansError(f"Stage {s + 1}: expansion ratios must be in {EXPANSIONS}, got {bad_e}.")

    # ------------------------------------------------------------------ facts
    @property
    def depths(self) -> tuple[int, ...]:
        """Number of active blocks in each stage."""
        return tuple(len(stage) for stage in self.kernels)

    @property
    def name(self) -> str:
        """The canonical name; :func:`parse_arch` turns it back into an equal :class:`Arch`."""
        d = "-".join(str(x) for x in self.depths)
        k = "-".join("".join(str(x) for x in stage) for stage in self.kernels)
        e = "-".join("".join(str(x) for x in stage) for stage in self.expansions)
        return f"{PREFIX}_w{_WIDTH_TEXT[self.width]}_d{d}_k{k}_e{e}"

    @property
    def short_name(self) -> str:
        """The width and depths only (``mbv3_w0.75_d2-3-4-2-3``): a prefix of :attr:`name` for tables."""
        return self.name.split("_k", 1)[0]

    def __str__(self) -> str:
        return self.name

    # ------------------------------------------------------------------ encoding
    @staticmethod
    def encoding_size() -> int:
        """Length of :meth:`encode`, the same for every architecture of the space."""
        return encoding_size()

    def encode(self) -> np.ndarray:
        """Fixed-length one-hot topology vector for the searcher's model encoder.

        Layout, in order: width one-hot (``len(WIDTHS)``); per stage, depth one-hot
        (``len(DEPTHS)``); per stage and block slot (``MAX_DEPTH`` slots), kernel one-hot
        (``len(KERNELS)``) then expansion one-hot (``len(EXPANSIONS)``). Slots beyond a stage's
        depth are inactive and stay all zero (the mask the published code computed and dropped).

        Returns
        -------
        np.ndarray
            ``(encoding_size(),)`` float32 of zeros and ones.
        """
        out = np.zeros(encoding_size(), dtype=np.float32)
        out[WIDTHS.index(self.width)] = 1.0
        pos = len(WIDTHS)
        for depth in self.depths:
            out[pos + DEPTHS.index(depth)] = 1.0
            pos += len(DEPTHS)
        slot = len(KERNELS) + len(EXPANSIONS)
        for ks, es in zip(self.kernels, self.expansions):
            for b in range(MAX_DEPTH):
                if b < len(ks):
                    out[pos + KERNELS.index(ks[b])] = 1.0
                    out[pos + len(KERNELS) + EXPANSIONS.index(es[b])] = 1.0
                pos += slot
        return out

    def active_mask(self) -> np.ndarray:
        """``(NUM_STAGES, MAX_DEPTH)`` bool: which block slots are active."""
        mask = np.zeros((NUM_STAGES, MAX_DEPTH), dtype=bool)
        for s, depth in enumerate(self.depths):
            mask[s, :depth] = True
        return mask


def encoding_size() -> int:
    """Length of :meth:`Arch.encode` for this space."""
    slot = len(KERNELS) + len(EXPANSIONS)
    return len(WIDTHS) + NUM_STAGES * len(DEPTHS) + NUM_STAGES * MAX_DEPTH * slot


def _digits(text: str, field: str, choices: tuple[int, ...], name: str) -> tuple[tuple[int, ...], ...]:
    groups = text.split("-")
    if len(groups) != NUM_STAGES:
        raise TansError(
            f"Architecture '{name}': the '{field}' field needs {NUM_STAGES} groups separated by '-', "
            f"got {len(groups)} ('{text}')."
        )
    out = []
    for s, group in enumerate(groups):
        if not group or not group.isdigit() or any(int(c) not in choices for c in group):
            raise TansError(
                f"Architecture '{name}': stage {s + 1} of '{field}' is '{group}'; expected digits from "
                f"{choices}."
            )
        out.append(tuple(int(c) for c in group))
    return tuple(out)


def parse_arch(name: str) -> Arch:
    """The :class:`Arch` a canonical name stands for.

    Parameters
    ----------
    name : str
        A name written by :attr:`Arch.name`, e.g.
        ``mbv3_w1.0_d2-2-2-2-2_k33-33-33-33-33_e33-33-33-33-33``.

    Returns
    -------
    Arch

    Raises
    ------
    TansError
        Saying which field is wrong and what it should look like.
    """
    example = "mbv3_w1.0_d2-3-2-2-4_k35-357-33-55-3577_e34-466-33-66-3466"
    if not isinstance(name, str) or not name.startswith(PREFIX + "_"):
        raise TansError(f"Architecture name must start with '{PREFIX}_', got '{name}' (e.g. '{example}').")
    m = _NAME_RE.match(name)
    if m is None:
        raise TansError(
            f"Architecture '{name}' does not have the form "
            f"'{PREFIX}_w<width>_d<depths>_k<kernels>_e<expansions>' (e.g. '{example}')."
        )
    w_text = m["w"]
    widths = {text: w for w, text in _WIDTH_TEXT.items()}
    if w_text not in widths:
        raise TansError(
            f"Architecture '{name}': unknown width 'w{w_text}'; expected one of "
            f"{', '.join('w' + t for t in widths)}." + did_you_mean("w" + w_text, ["w" + t for t in widths])
        )
    depths = _digits(m["d"], "d", DEPTHS, name)
    if any(len(g) != 1 for g in depths):
        raise TansError(
            f"Architecture '{name}': the 'd' field needs one depth digit per stage, got '{m['d']}'."
        )
    kernels = _digits(m["k"], "k", KERNELS, name)
    expansions = _digits(m["e"], "e", EXPANSIONS, name)
    for s, (dg, ks, es) in enumerate(zip(depths, kernels, expansions)):
        if not len(ks) == len(es) == dg[0]:
            raise TansError(
                f"Architecture '{name}': stage {s + 1} has depth {dg[0]} but {len(ks)} kernel and "
                f"{len(es)} expansion digits; give one of each per block."
            )
    return Arch(width=widths[w_text], kernels=kernels, expansions=expansions)


def short_name(name: str) -> str:
    """A label for tables: :attr:`Arch.short_name` of a canonical name; any other name (a registered
    preset, ``timm/<name>``) as it is."""
    try:
        return parse_arch(name).short_name
    except TansError:
        return name
