"""PConv: Liu et al. (ECCV 2018), "Image inpainting for irregular holes using partial convolutions".

A U-Net of partial convolutions: every convolution sees only valid pixels, re-normalises by the share of
valid inputs in its window, and hands on an updated mask (a pixel becomes valid once its window saw one
valid input), so the hole shrinks level by level. Facts from NVIDIA/partialconv (the layer and losses) and
naoto0804/pytorch-inpainting-with-partial-conv (the net and training) are in docs/methods.md section 7.

Deviations, all documented as options:
- depth ``layers`` defaults to log2(image_size) (bottleneck 1x1: 6 levels at 64 px, 7 at 128 px; the
  paper's 8 are for 512 px);
- the paper's two phases (lr 2e-4 with BN, then lr 5e-5 with encoder BN frozen) are fitted into one budget:
  the last ``finetune_fraction`` of the harness's training budget (``ctx.total_steps``) is the fine-tuning
  phase; which phase a step is in follows from its index, so a resumed run re-enters the right one;
- total variation follows the paper (the 1-pixel dilation of the hole), not naoto's whole-image TV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.method import Method, MethodContext, Restoration, paste, require_hole
from bench.nn.losses import perceptual_loss, style_loss
from bench.nn.schedules import set_lr
from bench.nn.vgg import VGGFeatures, find_vgg_weights
from bench.options import Options, option

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class PartialConv2d(nn.Conv2d):
    """Partial convolution with a multi-channel mask (1 = valid), as NVIDIA's ``multi_channel=True``.

    out = W^T (X*M) * sum(1)/sum(M) + b where sum(M) > 0, else 0; new mask = 1[sum(M) > 0], repeated over
    the output channels. sum(1) is the window size over all input channels (C*k*k).
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        with torch.no_grad():
            ones = torch.ones(1, self.in_channels, *self.kernel_size, device=x.device, dtype=x.dtype)
            valid = F.conv2d(mask, ones, stride=self.stride, padding=self.padding, dilation=self.dilation)
            new_mask = (valid > 0).to(x.dtype)
            ratio = ones.numel() / valid.clamp_min(1e-8) * new_mask
        raw = F.conv2d(x * mask, self.weight, None, self.stride, self.padding, self.dilation, self.groups)
        out = raw * ratio
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        out = out * new_mask
        return out, new_mask.expand(-1, self.out_channels, -1, -1)


class PConvLayer(nn.Module):
    """PConv -> (BN) -> activation, carrying the mask along."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, bn: bool, act: nn.Module | None) -> None:
        super().__init__()
        self.conv = PartialConv2d(cin, cout, kernel, stride, kernel // 2, bias=not bn)
        self.bn = nn.BatchNorm2d(cout) if bn else None
        self.act = act

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = self.conv(x, mask)
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x, mask


def encoder_plan(layers: int, width: int) -> list[tuple[int, int]]:
    """(kernel, channels) of each stride-2 encoder level: 7x7 w, 5x5 2w, 5x5 4w, 3x3 8w, then 3x3 8w."""
    plan = [(7, width), (5, 2 * width), (5, 4 * width), (3, 8 * width)]
    return (plan + [(3, 8 * width)] * max(0, layers - 4))[:layers]


class PConvUNet(nn.Module):
    """The paper's Table (supplementary) at ``layers`` levels; width 64 is the paper's.

    | level | encoder (stride 2)          | decoder (after nearest x2 + skip concat) |
    | 1     | PConv7x7 w, ReLU (no BN)    | PConv3x3 -> 3, linear, no BN (input: image+mask) |
    | 2     | PConv5x5 2w, BN, ReLU       | PConv3x3 -> w, BN, LeakyReLU(0.2) |
    | 3     | PConv5x5 4w, BN, ReLU       | PConv3x3 -> 2w, BN, LeakyReLU(0.2) |
    | 4     | PConv3x3 8w, BN, ReLU       | PConv3x3 -> 4w, BN, LeakyReLU(0.2) |
    | 5..L  | PConv3x3 8w, BN, ReLU       | PConv3x3 -> 8w, BN, LeakyReLU(0.2) |
    """

    def __init__(self, layers: int = 7, width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        plan = encoder_plan(layers, width)
        chans = [in_channels] + [c for _, c in plan]
        self.encoder = nn.ModuleList(
            PConvLayer(chans[i], c, k, 2, bn=i > 0, act=nn.ReLU(inplace=True)) for i, (k, c) in enumerate(plan)
        )
        self.decoder = nn.ModuleList()
        for i in range(layers):  # decoder[i] turns level i+1 back into level i's resolution and width
            last = i == 0
            self.decoder.append(
                PConvLayer(
                    chans[i + 1] + chans[i],
                    chans[i],
                    3,
                    1,
                    bn=not last,
                    act=None if last else nn.LeakyReLU(0.2, inplace=True),
                )
            )
        self.freeze_encoder_bn = False

    def train(self, mode: bool = True) -> PConvUNet:
        """Fine-tuning phase: encoder BN stays in eval mode (running statistics fixed)."""
        super().train(mode)
        if mode and self.freeze_encoder_bn:
            for layer in self.encoder:
                if layer.bn is not None:
                    layer.bn.eval()
        return self

    def set_finetune(self, finetune: bool) -> None:
        """Freeze (or thaw) the encoder BatchNorm layers: eval mode and no gradient to their parameters."""
        self.freeze_encoder_bn = finetune
        for layer in self.encoder:
            if layer.bn is not None:
                layer.bn.requires_grad_(not finetune)
        self.train(self.training)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """image [B,C,H,W] with holes (any values there), mask [B,C,H,W] 1 = valid -> [B,C,H,W], linear."""
        feats, masks = [image], [mask]
        h, m = image, mask
        for layer in self.encoder:
            h, m = layer(h, m)
            feats.append(h)
            masks.append(m)
        for i in reversed(range(len(self.decoder))):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            m = F.interpolate(m, scale_factor=2, mode="nearest")
            h, m = self.decoder[i](torch.cat([h, feats[i]], 1), torch.cat([m, masks[i]], 1))
        return h


def dilated_hole_tv(comp: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 6: TV over P, the 1-pixel dilation of the hole, normalised by the number of elements."""
    region = F.max_pool2d(hole, 3, stride=1, padding=1)
    dx = torch.abs(comp[..., :, 1:] - comp[..., :, :-1]) * (region[..., :, 1:] * region[..., :, :-1])
    dy = torch.abs(comp[..., 1:, :] - comp[..., :-1, :]) * (region[..., 1:, :] * region[..., :-1, :])
    return (dx.sum() + dy.sum()) / comp.numel()


def default_layers(image_size: int) -> int:
    layers = round(math.log2(image_size))
    if 2**layers != image_size or layers < 4:
        raise ValueError(f"PConv needs a power-of-two image size >= 16, got {image_size}")
    return layers


@dataclass(frozen=True)
class PConvOptions(Options):
    """PConv's options. Defaults = the paper (paper profile); ``quick`` = CPU width and batch."""

    width: int = option(64, "first encoder level's channels (paper 64)", min=1)
    layers: int | None = option(
        None, "U-Net levels (None = log2(image_size), a 1x1 bottleneck; the paper's 8 are for 512 px)", min=1
    )
    batch_size: int = option(6, "training batch size (paper 6)", min=1)
    lr: float = option(2e-4, "Adam learning rate of the first phase (paper 2e-4)", min=0.0)
    lr_finetune: float = option(5e-5, "Adam learning rate of the fine-tuning phase (paper 5e-5)", min=0.0)
    finetune_fraction: float = option(
        0.25, "share of the training budget at the end that fine-tunes with encoder BN frozen", min=0.0, max=1.0
    )
    lambda_valid: float = option(1.0, "weight of the L1 outside the hole (Eq. 7)", min=0.0)
    lambda_hole: float = option(6.0, "weight of the L1 inside the hole (Eq. 7)", min=0.0)
    lambda_perceptual: float = option(0.05, "weight of the perceptual loss (Eq. 7)", min=0.0)
    lambda_style: float = option(120.0, "weight of the style losses (Eq. 7)", min=0.0)
    lambda_tv: float = option(0.1, "weight of the total variation on the dilated hole (Eq. 7)", min=0.0)
    vgg_weights: str = option("", "local VGG-16 weights file ('' = --weights-dir or BENCH_VGG16_WEIGHTS, else random)")

    profiles = {"quick": {"width": 16, "batch_size": 4}, "standard": {"width": 32, "batch_size": 8}}


class PConvMethod(Method):
    """Trains on paired batches with the true masks; restores with the given mask."""

    Options = PConvOptions
    # quick and standard: minutes on a 2-core CPU (docs/methods.md section 14); quick 100 (was 150) for the main
    # job's 3-minute budget (docs/speed.md)
    default_steps = {"quick": 100, "standard": 1_800, "paper": 100_000}

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.cfg: PConvOptions = ctx.config
        size = ctx.image_size
        self.layers = self.cfg.layers if self.cfg.layers is not None else default_layers(size)
        if size % 2**self.layers:
            raise ValueError(
                f"pconv: option layers={self.layers} needs an image size divisible by 2**layers, got {size}"
            )
        self.total_steps = ctx.total_steps
        self.net = PConvUNet(self.layers, self.cfg.width).to(ctx.device)
        for module in self.net.modules():
            if isinstance(module, PartialConv2d):
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.mean = torch.tensor(_IMAGENET_MEAN, device=ctx.device).view(1, 3, 1, 1)
        self.std = torch.tensor(_IMAGENET_STD, device=ctx.device).view(1, 3, 1, 1)
        self.vgg: VGGFeatures | None = None
        self.opt_g: torch.optim.Adam | None = None
        self.data = None

    def weights(self) -> dict[str, float]:
        """Eq. 7's weight of each loss term."""
        cfg = self.cfg
        return {
            "valid": cfg.lambda_valid,
            "hole": cfg.lambda_hole,
            "perceptual": cfg.lambda_perceptual,
            "style": cfg.lambda_style,
            "tv": cfg.lambda_tv,
        }

    def finetune_start(self) -> int:
        return round(self.total_steps * (1.0 - self.cfg.finetune_fraction))

    def setup_training(self, data) -> None:
        self.data = data
        weights = find_vgg_weights(self.cfg.vgg_weights or None, self.ctx.weights_dir)
        self.vgg = VGGFeatures(weights, input_range="imagenet").to(self.ctx.device)
        self.opt_g = torch.optim.Adam(self.net.parameters(), lr=self.cfg.lr)

    def _apply_phase(self, step: int) -> None:
        finetune = step >= self.finetune_start()
        if finetune != self.net.freeze_encoder_bn:
            self.net.set_finetune(finetune)
        set_lr(self.cfg.lr_finetune if finetune else self.cfg.lr, self.opt_g)

    def _predict(self, masked01: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """[0,1] image with hole, hole mask 1 = occluded -> raw prediction, ImageNet-normalised."""
        valid = (1.0 - hole).expand(-1, 3, -1, -1)
        x = (masked01 - self.mean) / self.std * valid
        return self.net(x, valid.contiguous())

    def losses(self, masked01: torch.Tensor, gt01: torch.Tensor, hole: torch.Tensor) -> dict[str, torch.Tensor]:
        """The paper's Eq. 7 terms; pixel terms in normalised space (as naoto), VGG terms on [0,1] images."""
        out = self._predict(masked01, hole)
        gt = (gt01 - self.mean) / self.std
        comp = hole * out + (1 - hole) * gt
        terms = {
            "valid": torch.mean(torch.abs((1 - hole) * (out - gt))),
            "hole": torch.mean(torch.abs(hole * (out - gt))),
            "tv": dilated_hole_tv(comp, hole),
        }
        f_out, f_comp, f_gt = (self.vgg(t * self.std + self.mean) for t in (out, comp, gt))
        f_gt = [f.detach() for f in f_gt]
        terms["perceptual"] = perceptual_loss(f_out, f_gt) + perceptual_loss(f_comp, f_gt)
        terms["style"] = style_loss(f_out, f_gt) + style_loss(f_comp, f_gt)
        return terms

    def train_step(self, step: int) -> dict[str, float]:
        self._apply_phase(step)
        self.net.train()
        batch = self.data.paired(self.cfg.batch_size)
        device = self.ctx.device
        gt = batch.clean.to(device)
        hole = (batch.mask.to(device) > 0.5).float()
        terms = self.losses(gt * (1 - hole), gt, hole)
        weights = self.weights()
        loss = sum(weights[k] * v for k, v in terms.items())
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}}

    def parts(self) -> dict[str, Any]:
        return {"net": self.net, "opt_g": self.opt_g}

    @torch.no_grad()
    def restore(self, images: torch.Tensor, masks: torch.Tensor | None) -> Restoration:
        self.net.eval()
        device = self.ctx.device
        images, hole = images.to(device), require_hole("pconv", masks, device)
        pred = (self._predict(images * (1 - hole), hole) * self.std + self.mean).clamp(0, 1)
        return paste(pred, images, hole)

    def info(self) -> dict[str, Any]:
        return {
            "layers": self.layers,
            "width": self.cfg.width,
            "finetune_start": self.finetune_start(),
            "vgg": self.vgg.source if self.vgg is not None else None,
        }
