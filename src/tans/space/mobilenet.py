"""The network of the search space: a MobileNetV3 adapted to 32x32 images and CPU training.

Layout (resolutions for a 32x32 input; channels at width 1.0, scaled by the width multiplier)::

    stem     conv 3x3 stride 1, 8 ch (every width), hard-swish       32x32
    first    depth-wise 3x3 stride 2 + point-wise, 8 ch (fixed)      16x16
    stage 1  12 ch, stride 2, ReLU                                    8x8
    stage 2  16 ch, stride 1, ReLU, squeeze-excite                    8x8
    stage 3  24 ch, stride 2, hard-swish                              4x4
    stage 4  32 ch, stride 1, hard-swish, squeeze-excite              4x4
    stage 5  48 ch, stride 1, hard-swish, squeeze-excite              4x4
    head     conv 1x1 to 128 ch (every width), hard-swish; average pool; linear classifier

Each stage has 2-4 inverted-residual blocks (expand 1x1, depth-wise kxk, optional SE, project
1x1); the first block of a stage carries its stride. Unlike timm's MobileNetV3 the stem keeps full
resolution and the network stops at 4x4: with a stride-2 stem and stages down to 1x1 a 32x32
glyph task stayed at chance. Widths are small because every zoo entry is trained on one CPU
thread in seconds (depth-wise weight gradients dominate the cost on CPU). The penultimate features are 128 wide for every architecture so
functional embeddings of different networks are comparable.

The model follows timm's interface: ``forward_features``, ``forward_head(x, pre_logits=False)``,
``reset_classifier(num_classes)``, ``num_classes``, ``num_features``, ``head_hidden_size``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tans.space.arch import Arch

__all__ = ["MobileNetSpace", "StageSpec", "STAGES", "STEM_CHANNELS", "NUM_FEATURES", "count_params"]


@dataclass(frozen=True)
class StageSpec:
    """Fixed facts of one searchable stage."""

    channels: int  # output channels at width 1.0
    stride: int  # stride of the stage's first block
    se: bool  # squeeze-and-excite in every block
    act: str  # "relu" or "hswish"


STEM_CHANNELS = 8  # not scaled by the width: fewer than 8 channels at full resolution lose too much
STAGES = (
    StageSpec(12, 2, False, "relu"),
    StageSpec(16, 1, True, "relu"),
    StageSpec(24, 2, False, "hswish"),
    StageSpec(32, 1, True, "hswish"),
    StageSpec(48, 1, True, "hswish"),
)
NUM_FEATURES = 128  # penultimate width, the same for every architecture
_SMALL_MAP = 16  # pixels; depth-wise layers on maps this small use _DepthwiseWeightGrad
_DIVISOR = 4  # channel counts are rounded to multiples of this (8 is too coarse for tiny widths)


def _round(channels: float, divisor: int = _DIVISOR) -> int:
    """timm's make_divisible: round to a multiple of ``divisor``, never below 90% of the request."""
    out = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if out < 0.9 * channels:
        out += divisor
    return out


def _act(name: str) -> nn.Module:
    return nn.Hardswish(inplace=True) if name == "hswish" else nn.ReLU(inplace=True)


class _DepthwiseWeightGrad(torch.autograd.Function):
    """Depth-wise convolution whose weight gradient is a sum of k*k shifted products.

    oneDNN's depth-wise weight gradient on the CPU is very slow on small maps with many channels
    (17 ms instead of 2.7 ms for 144 channels at 4x4, kernel 5, batch 64; 37 ms instead of 7 ms
    for 216 channels, kernel 7), and those are exactly the late stages of this space.
    The input gradient still comes from oneDNN.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        s, p = ctx.stride, ctx.padding
        channels, _, k, _ = weight.shape
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [s, s], [p, p], [1, 1], False, [0, 0], channels, [True, False, False]
            )[0]
        if ctx.needs_input_grad[1]:
            ho, wo = grad.shape[2:]
            xp = F.pad(x, (p, p, p, p))
            taps = [
                (xp[:, :, i : i + s * ho : s, j : j + s * wo : s] * grad).sum((0, 2, 3))
                for i in range(k)
                for j in range(k)
            ]  # k*k tensors of (channels,)
            grad_w = torch.stack(taps, 1).reshape(weight.shape).to(memory_format=torch.channels_last)
        return grad_x, grad_w, None, None


class _DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` with ``groups == channels`` (same parameters), fast to train on small CPU maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        small = x.shape[2] * x.shape[3] <= _SMALL_MAP  # on larger maps oneDNN is as fast
        if x.device.type == "cpu" and small and torch.is_grad_enabled() and self.weight.requires_grad:
            return _DepthwiseWeightGrad.apply(x, self.weight, self.stride[0], self.padding[0])
        return super().forward(x)


class _ConvBnAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: str | None = "relu"):
        conv = _DepthwiseConv2d if groups == cin == cout and groups > 1 else nn.Conv2d
        layers: list[nn.Module] = [
            conv(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act is not None:
            layers.append(_act(act))
        super().__init__(*layers)


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        reduced = _se_channels(channels)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (batch, channels, 1, 1)
        s = self.expand(F.relu(self.reduce(s), inplace=True))
        return x * F.hardsigmoid(s)


def _se_channels(channels: int) -> int:
    return _round(channels / 4)


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, expansion: int, stride: int, se: bool, act: str):
        super().__init__()
        mid = _round(cin * expansion)
        self.expand = _ConvBnAct(cin, mid, 1, act=act)
        self.dw = _ConvBnAct(mid, mid, kernel, stride, groups=mid, act=act)
        self.se = _SqueezeExcite(mid) if se else nn.Identity()
        self.project = _ConvBnAct(mid, cout, 1, act=None)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        return x + out if self.residual else out


class MobileNetSpace(nn.Module):
    """One network of the search space.

    Parameters
    ----------
    arch : Arch
        The architecture (width, per-stage depth, per-block kernel and expansion).
    num_classes : int
        Size of the classifier; 0 leaves only the features (``forward`` returns pre-logits).
    in_chans : int
        Input channels (3 for the working format).
    drop_rate : float
        Dropout before the classifier.
    """

    def __init__(self, arch: Arch, *, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0):
        super().__init__()
        self.arch = arch
        self.arch_name = arch.name
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        stem = STEM_CHANNELS
        self.conv_stem = _ConvBnAct(in_chans, stem, 3, 1, act="hswish")
        # fixed first block: depth-wise separable, carries the first downsampling
        self.first = nn.Sequential(
            _ConvBnAct(stem, stem, 3, 2, groups=stem, act="relu"), _ConvBnAct(stem, stem, 1, act=None)
        )
        blocks: list[nn.Module] = []
        cin = stem
        for spec, ks, es in zip(STAGES, arch.kernels, arch.expansions):
            cout = _round(spec.channels * arch.width)
            stage = [
                _InvertedResidual(cin if b == 0 else cout, cout, k, e, spec.stride if b == 0 else 1, spec.se, spec.act)
                for b, (k, e) in enumerate(zip(ks, es))
            ]
            blocks.append(nn.Sequential(*stage))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = _ConvBnAct(cin, NUM_FEATURES, 1, act="hswish")
        self.num_features = self.head_hidden_size = NUM_FEATURES
        self.classifier: nn.Module = nn.Linear(NUM_FEATURES, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
        # residual branches start as identity: faster, steadier start for short training
        for m in self.modules():
            if isinstance(m, _InvertedResidual) and m.residual:
                nn.init.zeros_(m.project[1].weight)

    # ------------------------------------------------------------------ timm interface
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one for ``num_classes`` (0 removes it)."""
        self.num_classes = num_classes
        self.classifier = nn.Linear(NUM_FEATURES, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            nn.init.normal_(self.classifier.weight, 0.0, 0.01)
            nn.init.zeros_(self.classifier.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in_chans, h, w)`` -> ``(batch, 128, h/8, w/8)`` (4x4 for a 32x32 input)."""
        x = self.conv_stem(x)
        x = self.first(x)
        x = self.blocks(x)
        return self.conv_head(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the feature map; ``pre_logits=True`` returns the ``(batch, 128)`` penultimate features."""
        x = x.mean((2, 3))  # (batch, 128)
        if pre_logits:
            return x
        if self.drop_rate > 0:
            x = F.dropout(x, self.drop_rate, self.training)
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def count_params(arch: Arch, *, num_classes: int = 10, in_chans: int = 3) -> int:
    """Parameter count of ``MobileNetSpace(arch)`` computed without building it.

    Fast enough to rank thousands of candidate architectures (the stratified sampler does);
    tested equal to ``sum(p.numel())`` of the built model.
    """

    def cba(cin: int, cout: int, k: int, groups: int = 1) -> int:
        return cin // groups * cout * k * k + 2 * cout  # conv (no bias) + BN affine

    stem = STEM_CHANNELS
    total = cba(in_chans, stem, 3) + cba(stem, stem, 3, stem) + cba(stem, stem, 1)
    cin = stem
    for spec, ks, es in zip(STAGES, arch.kernels, arch.expansions):
        cout = _round(spec.channels * arch.width)
        for b, (k, e) in enumerate(zip(ks, es)):
            c = cin if b == 0 else cout
            mid = _round(c * e)
            total += cba(c, mid, 1) + cba(mid, mid, k, mid) + cba(mid, cout, 1)
            if spec.se:
                r = _se_channels(mid)
                total += mid * r + r + r * mid + mid
        cin = cout
    total += cba(cin, NUM_FEATURES, 1)
    if num_classes > 0:
        total += NUM_FEATURES * num_classes + num_classes
    return total
