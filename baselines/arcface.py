"""ArcFace's IResNet-50 and IResNet-100 (Deng et al., CVPR 2019), the recognizer ``arcface`` (docs/identity.md).

The network is InsightFace's PyTorch release (``recognition/arcface_torch/backbones/iresnet.py``) as that file
defines it, written here so that its released ``backbone.pth`` (a plain state dict) loads unchanged: the same
module names (``conv1``, ``bn1``, ``prelu``, ``layer1..4.<i>.{bn1,conv1,bn2,prelu,conv2,bn3,downsample}``, ``bn2``,
``fc``, ``features``), every BatchNorm with eps 1e-05, PReLU per channel, bias-free convolutions, dropout before
``fc`` (25088 -> 512) and a BatchNorm1d over the 512 features whose scale is fixed at 1. Its input is a 112 x 112
RGB face scaled (x - 127.5) / 127.5 (the release's ``inference.py``); the benchmark's aligned crop is resized to
112 px for it (bilinear, antialiased when shrinking). Nothing is ever downloaded: the weights are the user's file,
given with ``--id-weights``; the depth is read from the file's keys (blocks per stage).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.identification.recognizer import Recognizer, RecognizerContext, fit_problems

__all__ = ["DEPTHS", "ArcFaceRecognizer", "IResNet", "check_weights", "depth_of", "load_backbone", "to_input"]

DEPTHS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}  # IBasicBlocks per stage (iresnet50, iresnet100)
OTHER_DEPTHS = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 34, (6, 26, 60, 6): 200}  # released too, named when refused
WIDTHS = (64, 128, 256, 512)
INPUT_SIDE = 112  # 4 stride-2 stages -> 7 x 7 x 512 = 25088 inputs to fc
FEATURES = 512
EPS = 1e-05
BATCH = 32


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=EPS)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class IBasicBlock(nn.Module):
    """BN, conv 3x3, BN, PReLU, conv 3x3 (carrying the stride), BN; plus the shortcut (1x1 conv + BN when the
    shape changes). No activation after the sum: the "improved" pre-activation residual unit."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = _bn(cin)
        self.conv1 = _conv3x3(cin, cout)
        self.bn2 = _bn(cout)
        self.prelu = nn.PReLU(cout)
        self.conv2 = _conv3x3(cout, cout, stride)
        self.bn3 = _bn(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """``IResNet(IBasicBlock, layers)`` of arcface_torch at 112 px: a 3x3 stem (64 channels, stride 1), four
    stages of widths 64-512 each opening with a stride-2 block, then BN, flatten, dropout, fc and the feature
    BatchNorm1d. The initialisation is the release's (conv weights N(0, 0.1), BN scale 1, shift 0)."""

    def __init__(self, depth: int = 50, dropout: float = 0.0) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"IResNet depth must be one of {', '.join(map(str, DEPTHS))}, got {depth}")
        self.depth = depth
        self.conv1 = nn.Conv2d(3, WIDTHS[0], 3, 1, 1, bias=False)
        self.bn1 = _bn(WIDTHS[0])
        self.prelu = nn.PReLU(WIDTHS[0])
        cin = WIDTHS[0]
        for stage, (width, blocks) in enumerate(zip(WIDTHS, DEPTHS[depth], strict=True), 1):
            layers = [IBasicBlock(cin if i == 0 else width, width, 2 if i == 0 else 1) for i in range(blocks)]
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
            cin = width
        self.bn2 = _bn(WIDTHS[-1])
        self.dropout = nn.Dropout(dropout)
        side = INPUT_SIDE // 16
        self.fc = nn.Linear(WIDTHS[-1] * side * side, FEATURES)
        self.features = nn.BatchNorm1d(FEATURES, eps=EPS)
        self.features.weight.requires_grad = False
        if self.fc.weight.is_meta:  # built to compare shapes or to load into: initialising it would cost seconds
            return
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.ones_(self.features.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def _tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The file's state dict (a ``module.`` prefix of DataParallel dropped), or ValueError naming what it holds."""
    if Path(path).suffix == ".safetensors":
        from safetensors.torch import load_file

        return {key.removeprefix("module."): value for key, value in load_file(str(path)).items()}
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, Mapping) else state
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors (InsightFace's backbone.pth is one)")
    return {key.removeprefix("module."): value for key, value in state.items()}


def _blocks(keys) -> tuple[int, ...]:
    """Blocks per stage found in ``layer<s>.<i>.`` keys (0 for a stage without any)."""
    counts = [0, 0, 0, 0]
    for key in keys:
        parts = key.split(".")
        if len(parts) > 2 and parts[0] in ("layer1", "layer2", "layer3", "layer4") and parts[1].isdigit():
            stage = int(parts[0][-1]) - 1
            counts[stage] = max(counts[stage], int(parts[1]) + 1)
    return tuple(counts)


def depth_of(path: str | Path, tensors: Mapping | None = None) -> int:
    """The IResNet depth of a weights file, from its blocks per stage; ValueError for any other layout."""
    blocks = _blocks((tensors if tensors is not None else _tensors(path)).keys())
    for depth, layout in DEPTHS.items():
        if blocks == layout:
            return depth
    if blocks == (0, 0, 0, 0):
        raise ValueError(f"{path}: does not fit ArcFace IResNet: no layer1..layer4 keys (not an IResNet state dict)")
    known = OTHER_DEPTHS.get(blocks)
    name = f" (IResNet-{known})" if known else ""
    raise ValueError(
        f"{path}: an IResNet with {list(blocks)} blocks per stage{name}; the arcface recognizer takes IResNet-50 "
        f"{list(DEPTHS[50])} or IResNet-100 {list(DEPTHS[100])}"
    )


def check_weights(path: str | Path, depth: int | None = None, found: dict[str, torch.Tensor] | None = None) -> int:
    """Refuse a file whose tensors are not IResNet-``depth``'s (the depth read from the file when None): the
    first keys missing, unexpected or of another shape. BatchNorm's ``num_batches_tracked`` counters may be
    absent. Built on the meta device, so nothing is allocated. ``found``: the file's tensors, when already read.
    Returns the depth."""
    found = _tensors(path) if found is None else found
    have = depth_of(path, found) if _blocks(found) != (0, 0, 0, 0) or depth is None else depth
    if depth is not None and have != depth:
        raise ValueError(
            f"{path}: holds IResNet-{have}, not IResNet-{depth}; use --id-model arcface (the depth from the file) "
            f"or arcface_r{have}"
        )
    with torch.device("meta"):
        wanted = IResNet(have).state_dict()
    problems = fit_problems(found, wanted, f"IResNet-{have}", optional="num_batches_tracked")
    if problems:
        raise ValueError(f"{path}: does not fit ArcFace IResNet-{have}: " + "; ".join(problems))
    return have


def load_backbone(path: str | Path, depth: int | None = None, device: str | torch.device = "cpu") -> IResNet:
    """IResNet in eval mode with the file's weights (checked first; missing ``num_batches_tracked`` filled)."""
    tensors = _tensors(path)
    depth = check_weights(path, depth, tensors)
    with torch.device("meta"):  # no initialisation to pay for: every tensor comes from the file
        model = IResNet(depth)
    model = model.to_empty(device=device)
    for key in model.state_dict():
        if key.endswith("num_batches_tracked"):
            tensors.setdefault(key, torch.zeros((), dtype=torch.long))
    model.load_state_dict(tensors)
    return model.eval()


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 RGB faces [N,H,W,3] -> float32 [N,3,112,112], (x - 127.5) / 127.5, resized bilinearly (antialiased
    when shrinking) from the benchmark's side."""
    x = torch.from_numpy(np.array(images, np.float32)).permute(0, 3, 1, 2)  # a copy: the sets may be read-only maps
    if x.shape[-2:] != (INPUT_SIDE, INPUT_SIDE):
        shrink = x.shape[-1] > INPUT_SIDE
        x = F.interpolate(x, (INPUT_SIDE, INPUT_SIDE), mode="bilinear", align_corners=False, antialias=shrink)
    return (x - 127.5) / 127.5


class ArcFaceRecognizer(Recognizer):
    """ArcFace behind the recognizer interface: pretrained only (``weights="required"``), 512-d features of one
    view of each face (no flip averaging, as in the release's ``inference.py`` and the face-restoration "Deg.")."""

    depth: ClassVar[int | None] = None  # None: read from the weights file

    def __init__(self, ctx: RecognizerContext) -> None:
        super().__init__(ctx)
        if ctx.weights is None:
            raise ValueError("ArcFace needs InsightFace's backbone.pth; give it with --id-weights FILE")
        self.model = load_backbone(ctx.weights, self.depth, ctx.device)

    @classmethod
    def check_weights(cls, path: Path) -> None:
        check_weights(path, cls.depth)

    def describe(self) -> str:
        side = self.ctx.image_size
        resize = "as is" if side == INPUT_SIDE else f"resized {side} -> {INPUT_SIDE} px bilinear"
        return (
            f"ArcFace IResNet-{self.model.depth} (InsightFace arcface_torch layout) from {self.ctx.weights}; faces "
            f"{resize}, RGB (x - 127.5) / 127.5, one view (no flip), 512-d fc + BN1d features"
        )

    @torch.inference_mode()
    def embed(self, images: np.ndarray) -> np.ndarray:
        device = next(self.model.parameters()).device
        chunks = [self.model(to_input(images[i : i + BATCH]).to(device)) for i in range(0, len(images), BATCH)]
        feats = torch.cat(chunks) if chunks else torch.empty(0, FEATURES)
        return feats.float().cpu().numpy()


class ArcFace50(ArcFaceRecognizer):
    depth = 50


class ArcFace100(ArcFaceRecognizer):
    depth = 100
