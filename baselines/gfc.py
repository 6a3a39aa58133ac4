"""GFC: Li, Liu, Yang, Yang (CVPR 2017), "Generative face completion".

An encoder-decoder whose decoder un-pools with the encoder's max-pooling indices (SegNet style), an fc
bottleneck, no mask channel (the hole is filled with U(-1,1) noise) and no tanh at the output; a local
discriminator on the hole patch and a global one on the completed image (BCE). Facts from the official
Caffe/MATLAB code (Yijunmaverick/GenerativeFaceCompletion) are in docs/methods.md section 5.

Loss scaling. The official solver stacks *gradients* w.r.t. the output: reconstruction Charbonnier L1
``sum(sqrt(d^2+eps^2))/batch``, plus 300x the local and 300x the global BCE gradient (each ``-log D``
summed per sample, over the batch), plus 0.05x the parsing softmax gradient (summed over pixels). That
is the gradient of ``L = recon_sum + 300 adv_local + 300 adv_global + 0.05 parsing_sum`` (per-sample sums,
batch mean). We minimise ``L / (3 H W)``: the same direction (Adam ignores the constant), with the
reconstruction reported as a per-pixel mean; in per-pixel terms each adversarial weight is 300 / (3 H W).
Outside the hole the composite is the ground truth, so the parsing gradient reaches G only through the
hole, as in the official ``gradstack``.

Deviations, all options:
- our occluders are arbitrary shapes, not 64x64 boxes: the local D sees the mask's bounding box resized to
  ``patch_size`` (image_size // 2, the official 64 at 128 px);
- widths scale with ``width`` (first conv; 32 official) and the fc bottleneck with image size and width
  (4096 / 16384 at 128 px and width 32);
- the face-parsing term needs a local TorchScript file (``parsing_model``: [B,3,H,W] in [0,1] -> class
  logits [B,K,h,w]); without one it is off and :meth:`GFCMethod.info` says so;
- the official stage-wise schedule (a reconstruction-only model, then the adversarial terms) runs inside
  one budget: the first ``recon_only_fraction`` (0.3) of the harness's training budget
  (``ctx.total_steps``) is reconstruction only, and the discriminators are not trained then;
- the quick (CPU) profile uses width 8 and batch 8 (official batch 2) for a run of a few minutes.

At restore time each face's hole noise comes from a generator seeded by the run's seed and that face
(:func:`baselines.seeding.sample_generators`), so a face's result does not depend on its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.seeding import sample_generators
from bench.method import Method, MethodContext, Restoration, paste, require_hole
from bench.nn.gan import GANLoss
from bench.nn.init import normal_init
from bench.options import Options, option


def _convs(cin: int, widths: list[int]) -> nn.Sequential:
    """conv3x3 + ReLU per width (every G conv of Model_G.prototxt)."""
    layers: list[nn.Module] = []
    for cout in widths:
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
        cin = cout
    return nn.Sequential(*layers)


class GFCGenerator(nn.Module):
    """Model_G: 4 encoder stages (2,2,2,4 convs) with argmax pooling, fc -> fc, 4 unpool+conv stages."""

    def __init__(self, image_size: int = 128, width: int = 32, fc_width: int | None = None) -> None:
        super().__init__()
        if image_size % 16:
            raise ValueError(f"GFC needs an image size divisible by 16, got {image_size}")
        c = [width, 2 * width, 4 * width, 8 * width]  # 32, 64, 128, 256 at width 32
        self.encoder = nn.ModuleList(
            [_convs(3, [c[0]] * 2), _convs(c[0], [c[1]] * 2), _convs(c[1], [c[2]] * 2), _convs(c[2], [c[3]] * 4)]
        )
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.bottleneck = (c[3], image_size // 16, image_size // 16)  # 256 x 8 x 8 at 128 px
        flat = math.prod(self.bottleneck)
        fc_width = fc_width or default_fc_width(image_size, width)
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, fc_width), nn.ReLU(inplace=True), nn.Linear(fc_width, flat), nn.ReLU(True)
        )
        self.decoder = nn.ModuleList(
            [
                _convs(c[3], [c[1], c[1], c[1], c[2]]),  # after unpooling with pool3's indices
                _convs(c[2], [c[1], c[1]]),
                _convs(c[1], [c[1], c[0]]),
                _convs(c[0], [c[0], c[0]]),
            ]
        )
        self.to_rgb = nn.Conv2d(c[0], 3, 3, padding=1)  # no tanh: [-1,1] by training
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Caffe 'msra' with variance_norm AVERAGE: std sqrt(4 / (fan_in + fan_out)); last conv N(0, 1e-3)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
                nn.init.normal_(m.weight, 0.0, math.sqrt(4.0 / (fan_in + fan_out)))
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.to_rgb.weight, 0.0, 1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        switches = []
        for stage in self.encoder:
            x = stage(x)
            size = x.shape[-2:]
            x, idx = self.pool(x)
            switches.append((idx, size))
        x = self.fc(x).view(-1, *self.bottleneck)
        for stage, (idx, size) in zip(self.decoder, reversed(switches), strict=True):
            x = stage(self.unpool(x, idx, output_size=size))
        return self.to_rgb(x)


def default_fc_width(image_size: int, width: int) -> int:
    """4096 at 128 px and width 32, scaled with the bottleneck's area and the width."""
    return max(16, round(4096 * (width / 32) * (image_size / 128) ** 2))


class GFCDiscriminator(nn.Module):
    """Model_localD / Model_globalD: (conv3 s1, conv4 s2) pairs with LeakyReLU 0.2, a conv to 1 logit.

    The last conv spans the remaining map (4x4 at the official sizes); the sigmoid lives in the BCE loss.
    """

    def __init__(self, in_size: int, widths: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for cout in widths:
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2, True)]
            layers += [nn.Conv2d(cout, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
            cin = cout
        final = in_size // 2 ** len(widths)
        if final < 1:
            raise ValueError(f"discriminator input {in_size} px is too small for {len(widths)} stages")
        layers.append(nn.Conv2d(cin, 1, final))
        self.net = nn.Sequential(*layers)
        self.apply(normal_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


def mask_boxes(masks: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """Bounding box (top, left, bottom, right; exclusive) of each mask's hole; the whole image if empty."""
    boxes = []
    for m in masks[:, 0] > 0.5:
        rows, cols = torch.nonzero(m.any(1)).flatten(), torch.nonzero(m.any(0)).flatten()
        if len(rows) == 0:
            boxes.append((0, 0, m.shape[0], m.shape[1]))
        else:
            boxes.append((int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1))
    return boxes


def crop_boxes(images: torch.Tensor, boxes: list[tuple[int, int, int, int]], size: int) -> torch.Tensor:
    """Each image's box, resized (bilinear, differentiable) to ``size`` x ``size``: the local patches."""
    crops = [
        F.interpolate(img[None, :, t:b, left:r], size=(size, size), mode="bilinear", align_corners=False)
        for img, (t, left, b, r) in zip(images, boxes, strict=True)
    ]
    return torch.cat(crops)


def charbonnier_sum(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """GFC_L1_loss: sum of sqrt(d^2 + eps^2) per sample, averaged over the batch."""
    return torch.sqrt((pred - target) ** 2 + eps**2).flatten(1).sum(1).mean()


@dataclass(frozen=True)
class GFCOptions(Options):
    """GFC's options. Defaults = the official code (paper profile); ``quick`` = CPU widths and batch."""

    width: int = option(32, "generator base channels (first conv; official 32)", min=1)
    fc_width: int | None = option(
        None, "fc bottleneck width (None = 4096 at 128 px and width 32, scaled with area and width)", min=1
    )
    d_width: int = option(64, "discriminator base channels (local D 64..512, global D 32..512 at 64)", min=2)
    patch_size: int | None = option(
        None, "side of the local D's input, the resized hole box (None = image_size // 2)", min=16
    )
    batch_size: int = option(2, "training batch size (official 2)", min=1)
    lr: float = option(1e-4, "generator Adam learning rate", min=0.0)
    lr_d: float = option(2e-4, "discriminators' Adam learning rate", min=0.0)
    beta1: float = option(0.9, "generator Adam beta1", min=0.0, below=1.0)
    beta2: float = option(0.999, "generator Adam beta2", min=0.0, below=1.0)
    beta1_d: float = option(0.5, "discriminators' Adam beta1", min=0.0, below=1.0)
    beta2_d: float = option(0.999, "discriminators' Adam beta2", min=0.0, below=1.0)
    recon_only_fraction: float = option(
        0.3, "share of the training budget that is reconstruction only (D untrained)", min=0.0, max=1.0
    )
    lambda_local_adv: float = option(300.0, "local adversarial weight on the gradient stack (official 300)", min=0.0)
    lambda_global_adv: float = option(300.0, "global adversarial weight on the gradient stack (official 300)", min=0.0)
    lambda_parsing: float = option(0.05, "face-parsing loss weight (official 0.05)", min=0.0)
    parsing_model: str = option("", "local TorchScript face-parsing network file for the parsing loss ('' = off)")

    profiles = {"quick": {"width": 8, "d_width": 16, "batch_size": 8}, "standard": {"width": 16, "d_width": 32}}


class GFCMethod(Method):
    """Trains on paired batches with the true masks; restores with the given mask (hole filled with noise)."""

    Options = GFCOptions
    # quick and standard: minutes on a 2-core CPU (docs/methods.md section 14)
    default_steps = {"quick": 220, "standard": 12_000, "paper": 100_000}

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.cfg: GFCOptions = ctx.config
        cfg, size = self.cfg, ctx.image_size
        self.fc_width = cfg.fc_width if cfg.fc_width is not None else default_fc_width(size, cfg.width)
        self.patch_size = cfg.patch_size if cfg.patch_size is not None else size // 2
        self.total_steps = ctx.total_steps
        d = cfg.d_width
        self.G = GFCGenerator(size, cfg.width, self.fc_width).to(ctx.device)
        self.D_local = GFCDiscriminator(self.patch_size, [d, 2 * d, 4 * d, 8 * d]).to(ctx.device)
        self.D_global = GFCDiscriminator(size, [d // 2, d, 2 * d, 4 * d, 8 * d]).to(ctx.device)
        self.gan_loss = GANLoss("vanilla")  # BCE on logits: the official nets end in a sigmoid + BCE
        self.parser: torch.jit.ScriptModule | None = None
        self.opt_g: torch.optim.Adam | None = None
        self.opt_d: torch.optim.Adam | None = None
        self.data = None

    def weights(self) -> dict[str, float]:
        """The weights of the adversarial and parsing terms (the reconstruction term has weight 1)."""
        cfg = self.cfg
        return {"local_adv": cfg.lambda_local_adv, "global_adv": cfg.lambda_global_adv, "parsing": cfg.lambda_parsing}

    def adversarial_start(self) -> int:
        return round(self.total_steps * self.cfg.recon_only_fraction)

    def setup_training(self, data) -> None:
        cfg = self.cfg
        self.data = data
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        d_params = list(self.D_local.parameters()) + list(self.D_global.parameters())
        self.opt_d = torch.optim.Adam(d_params, lr=cfg.lr_d, betas=(cfg.beta1_d, cfg.beta2_d))
        if cfg.parsing_model:
            path = Path(cfg.parsing_model).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"parsing_model {path} does not exist; fix the path or drop the option")
            self.parser = torch.jit.load(str(path), map_location=self.ctx.device).eval()
            for p in self.parser.parameters():
                p.requires_grad_(False)

    def _input(self, images01: torch.Tensor, hole: torch.Tensor, generators: list[torch.Generator] | None = None):
        """[0,1] image -> [-1,1] with the hole filled by U(-1,1) noise (the official test/train input).

        Training draws from the global generator (saved by the harness); restore passes one generator
        per sample, so each face's noise is its own."""
        if generators is None:
            noise = torch.rand(images01.shape)
        else:
            noise = torch.stack([torch.rand(images01.shape[1:], generator=g) for g in generators])
        return torch.where(hole > 0.5, noise.to(images01.device) * 2 - 1, images01 * 2 - 1)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = self.data.paired(self.cfg.batch_size)
        device = self.ctx.device
        hole = (batch.mask.to(device) > 0.5).float()
        gt = batch.clean.to(device) * 2 - 1
        return self._input(batch.occluded.to(device) * (1 - hole), hole), gt, hole

    def _d_step(self) -> float:
        x, gt, hole = self._batch()
        with torch.no_grad():
            comp = hole * self.G(x) + (1 - hole) * gt
        boxes = mask_boxes(hole)
        loss = 0.0
        for d, real, fake in (
            (self.D_local, crop_boxes(gt, boxes, self.patch_size), crop_boxes(comp, boxes, self.patch_size)),
            (self.D_global, gt, comp),
        ):
            loss = loss + self.gan_loss(d(real), True) + self.gan_loss(d(fake), False)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return float(loss.detach())

    def g_losses(self, x: torch.Tensor, gt: torch.Tensor, hole: torch.Tensor, adversarial: bool):
        """The per-sample-sum terms of the official gradient stack (see the module docstring)."""
        out = self.G(x)
        terms = {"recon": charbonnier_sum(out, gt)}
        if adversarial:
            comp = hole * out + (1 - hole) * gt
            local = self.D_local(crop_boxes(comp, mask_boxes(hole), self.patch_size))
            glob = self.D_global(comp)
            terms["local_adv"] = self.gan_loss(local, True, reduction="per_sample")
            terms["global_adv"] = self.gan_loss(glob, True, reduction="per_sample")
            if self.parser is not None:
                with torch.no_grad():
                    target = self.parser((gt + 1) / 2).argmax(1)
                logits = self.parser((comp + 1) / 2)
                terms["parsing"] = F.cross_entropy(logits, target, reduction="sum") / len(x)
        return terms

    def train_step(self, step: int) -> dict[str, float]:
        adversarial = step >= self.adversarial_start()
        self.G.train()
        logs: dict[str, float] = {}
        if adversarial:
            logs["d_loss"] = self._d_step()
        x, gt, hole = self._batch()
        terms = self.g_losses(x, gt, hole, adversarial)
        pixels = gt[0].numel()
        weights = self.weights()
        loss = (terms["recon"] + sum(weights[k] * v for k, v in terms.items() if k != "recon")) / pixels
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        logs["loss"] = float(loss.detach())
        logs["recon"] = float(terms["recon"].detach()) / pixels
        logs.update({k: float(v.detach()) for k, v in terms.items() if k != "recon"})
        return logs

    def parts(self) -> dict[str, Any]:
        return {
            "G": self.G,
            "D_local": self.D_local,
            "D_global": self.D_global,
            "opt_g": self.opt_g,
            "opt_d": self.opt_d,
        }

    @torch.no_grad()
    def restore(self, images: torch.Tensor, masks: torch.Tensor | None) -> Restoration:
        self.G.eval()
        device = self.ctx.device
        images, hole = images.to(device), require_hole("gfc", masks, device)
        noise = sample_generators(self.ctx.seed, images, hole)  # per face: the same fill in any batch
        pred = ((self.G(self._input(images * (1 - hole), hole, noise)) + 1) / 2).clamp(0, 1)
        return paste(pred, images, hole)

    def info(self) -> dict[str, Any]:
        return {
            "width": self.cfg.width,
            "fc_width": self.fc_width,
            "d_width": self.cfg.d_width,
            "patch_size": self.patch_size,
            "adversarial_start": self.adversarial_start(),
            "parsing_loss": f"on ({self.cfg.parsing_model})"
            if self.cfg.parsing_model
            else "off (no parsing model file)",
        }
