"""CSA: Liu, Jiang, Xiao, Yang (ICCV 2019), "Coherent semantic attention for image inpainting".

Two stages. A rough pix2pix U-Net fills the hole (input: the image with the hole set to the ImageNet mean
colour); its hole pixels are pasted into the input and a refinement U-Net, with the coherent semantic
attention (CSA) layer at 1/8 resolution, produces the result. The CSA layer replaces each hole feature by
its most similar known feature, then walks the hole in raster order blending each result with the previous
generated one (the paper's D_ad / D_max weighting), so neighbouring fills stay coherent. Two discriminators
(70x70 PatchGAN on the image, a patch D on VGG-16 relu3_3) play a relativistic-average LSGAN. Facts from
KumapowerLIU/CSA-inpainting are in docs/methods.md section 8.

Deviations (documented, kept small):
- the consistency loss (MSE between the hole features after the CSA layer / of the decoder at that level
  and the ground truth's VGG features) really trains G here; the official code wraps it in a fresh
  ``Variable(loss.data, requires_grad=True)``, so it never reaches G;
- the VGG target layer is relu4_3 when the CSA level has 512 channels (width 64, the paper); narrower
  quick-profile nets use the VGG layer with their channel count (relu3_3/2_2/1_2), average-pooled to the
  1/8 grid;
- masks are per sample, so batches > 1 work (the official code needs batch 1: one global mask); the paper
  profile keeps batch 1, the quick profile uses 4 (``batch_size``) to see more faces per CPU-minute;
- D_max and D_ad are both cosine similarities, clamped at 0 (the official code mixes normalised and
  unnormalised dot products); attention weights are constants for backprop, and hole features also get a
  straight-through gradient (the official backward adds the identity too);
- the refinement net ends in Tanh (the official outermost block has none), so outputs stay in [-1,1];
- VGG inputs are ImageNet-normalised (the official Vgg16 gets [-1,1] images unnormalised).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.io import file_sha256
from bench.method import Method, MethodContext, Restoration, paste, require_hole
from bench.nn.gan import patch_discriminator
from bench.nn.init import normal_init
from bench.nn.norm import InstanceNorm2d
from bench.nn.vgg import find_vgg_weights
from bench.options import Options, option

FILL_RGB = (123.0 / 255.0, 104.0 / 255.0, 117.0 / 255.0)  # the official hole fill, ImageNet mean colour
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
VGG_TAPS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}  # indices in vgg16.features
CONSISTENCY_LAYER = {64: "relu1_2", 128: "relu2_2", 256: "relu3_3", 512: "relu4_3"}  # by channel count
CSA_LEVEL = 3  # the CSA layer works on the 1/8 grid


# --------------------------------------------------------------------------------------------- CSA layer
def feature_hole(mask: torch.Tensor, levels: int = CSA_LEVEL, threshold: float = 5 / 16) -> torch.Tensor:
    """Image hole mask [B,1,H,W] -> feature-grid hole mask at 1/2**levels (official ``cal_feat_mask``:
    ``levels`` 4x4/stride-2 averages with zero padding, then > threshold)."""
    kernel = torch.full((1, 1, 4, 4), 1 / 16, device=mask.device, dtype=mask.dtype)
    for _ in range(levels):
        mask = F.conv2d(mask, kernel, stride=2, padding=1)
    return (mask > threshold).to(mask.dtype)


def csa_attention(feats: torch.Tensor, hole: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The CSA layer's attention matrix A [B,N,N] (N = H*W, rows = output positions), no gradient.

    Known positions keep themselves. Hole positions, in raster order: the first takes its best known match
    m_bar (cosine similarity D_max); each next one is D_ad/(D_ad+D_max) * previous fill +
    D_max/(D_ad+D_max) * m_bar, where D_ad is the cosine between the previous fill and the current
    hole feature. A sample without known positions keeps its features.
    """
    b, c, h, w = feats.shape
    n = h * w
    with torch.no_grad():
        f = feats.flatten(2).transpose(1, 2)  # [B,N,C]
        is_hole = hole.flatten(1) > 0.5  # [B,N]
        fn = F.normalize(f, dim=2, eps=eps)
        sim = (fn @ fn.transpose(1, 2)).masked_fill(is_hole[:, None, :], -math.inf)
        d_max, best = sim.max(dim=2)  # [B,N]
        active_rows = is_hole & (~is_hole).any(1, keepdim=True)
        attn = torch.eye(n, device=f.device, dtype=f.dtype).repeat(b, 1, 1)
        prev_row = torch.zeros(b, n, device=f.device, dtype=f.dtype)
        prev_fill = torch.zeros(b, c, device=f.device, dtype=f.dtype)
        started = torch.zeros(b, dtype=torch.bool, device=f.device)
        for p in torch.nonzero(active_rows.any(0)).flatten().tolist():
            on = active_rows[:, p]
            d_m = d_max[:, p].clamp_min(0)
            d_ad = (F.normalize(prev_fill, dim=1, eps=eps) * fn[:, p]).sum(1).clamp_min(0) * started
            denom = d_ad + d_m
            w_prev = torch.where(denom > eps, d_ad / denom.clamp_min(eps), torch.zeros_like(denom))
            row = w_prev[:, None] * prev_row + (1 - w_prev)[:, None] * F.one_hot(best[:, p], n).to(f.dtype)
            attn[:, p] = torch.where(on[:, None], row, attn[:, p])
            prev_row = torch.where(on[:, None], row, prev_row)
            prev_fill = torch.where(on[:, None], (row[:, None, :] @ f).squeeze(1), prev_fill)
            started = started | on
    return attn


class CSALayer(nn.Module):
    """Applies :func:`csa_attention`; gradients flow through the copied features and, straight through,
    to the hole features themselves (as the official backward's identity term)."""

    def forward(self, feats: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        b, c, h, w = feats.shape
        attn = csa_attention(feats, hole)
        out = (attn @ feats.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)
        return out + hole * (feats - feats.detach())


# -------------------------------------------------------------------------------------------- generators
def _norm(channels: int) -> nn.Module:
    return InstanceNorm2d(channels, affine=True)


class RoughBlock(nn.Module):
    """pix2pix ``UnetSkipConnectionBlock``: conv4 s2 down, sub-block, deconv4 s2 up, skip concat."""

    def __init__(self, outer: int, inner: int, sub: nn.Module | None, in_ch: int | None = None) -> None:
        super().__init__()
        self.outermost = in_ch is not None
        in_ch = in_ch if in_ch is not None else outer
        down: list[nn.Module] = [] if self.outermost else [nn.LeakyReLU(0.2, True)]
        down.append(nn.Conv2d(in_ch, inner, 4, 2, 1))
        if sub is not None and not self.outermost:
            down.append(_norm(inner))
        up_in = inner if sub is None else 2 * inner
        up: list[nn.Module] = [nn.ReLU(True), nn.ConvTranspose2d(up_in, outer, 4, 2, 1)]
        up.append(nn.Tanh() if self.outermost else _norm(outer))
        self.down, self.sub, self.up = nn.Sequential(*down), sub, nn.Sequential(*up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(x)
        if self.sub is not None:
            y = self.sub(y)
        y = self.up(y)
        return y if self.outermost else torch.cat([y, x], 1)


def rough_unet(size: int, ngf: int, in_ch: int = 3, out_ch: int = 3) -> RoughBlock:
    """The official rough net ``unet_256`` (8 downs), with log2(size) downs: bottleneck 1x1."""
    downs = round(math.log2(size))
    if 2**downs != size or downs < 5:
        raise ValueError(f"CSA needs a power-of-two image size >= 32, got {size}")
    block = RoughBlock(8 * ngf, 8 * ngf, None)
    for _ in range(downs - 5):
        block = RoughBlock(8 * ngf, 8 * ngf, block)
    block = RoughBlock(4 * ngf, 8 * ngf, block)
    block = RoughBlock(2 * ngf, 4 * ngf, block)
    block = RoughBlock(ngf, 2 * ngf, block)
    return RoughBlock(out_ch, ngf, block, in_ch=in_ch)


class RefineBlock(nn.Module):
    """The official ``UnetSkipConnectionBlock_3`` (and ``CSA`` when ``csa``): down = dilated conv4 s2 then
    conv3 (+ the CSA layer), up = deconv3 then deconv4 s2, IN throughout; innermost: dilated conv4 s2 only.
    Stores the CSA level's encoder and decoder features for the consistency loss."""

    def __init__(self, outer: int, inner: int, sub: RefineBlock | None, csa: bool = False) -> None:
        super().__init__()
        self.sub, self.csa = sub, CSALayer() if csa else None
        dilated = nn.Conv2d(outer, outer, 4, 2, padding=3, dilation=2)
        if sub is None:  # innermost
            self.down_a = nn.Sequential(nn.LeakyReLU(0.2, True), dilated)
            self.down_b = nn.Identity()
            self.up = nn.Sequential(nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, 2, 1), _norm(outer))
        else:
            self.down_a = nn.Sequential(
                nn.LeakyReLU(0.2, True),
                dilated,
                _norm(outer),
                nn.LeakyReLU(0.2, True),
                nn.Conv2d(outer, inner, 3, 1, 1),
            )
            self.down_b = _norm(inner)
            self.up = nn.Sequential(
                nn.ReLU(),  # not in place: the decoder tap is a view of its input
                nn.ConvTranspose2d(2 * inner, outer, 3, 1, 1),
                _norm(outer),
                nn.ReLU(True),
                nn.ConvTranspose2d(outer, outer, 4, 2, 1),
                _norm(outer),
            )
        self.taps: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        y = self.down_a(x)
        if self.csa is not None:
            y = self.csa(y, hole)
            self.taps = [y]
        y = self.down_b(y)
        if self.sub is not None:
            y = self.sub(y, hole)
            if self.csa is not None:
                self.taps.append(y[:, : y.shape[1] // 2])  # the decoder's own output at this level
        return torch.cat([self.up(y), x], 1)


class RefineUNet(nn.Module):
    """The official ``unet_csa`` with log2(size) stride-2 levels (bottleneck 1x1; 8 levels at 256 px).

    | level | down (channels)        | note |
    | 0     | conv3 s1: in -> w      | up: deconv3 -> 3, Tanh |
    | 1, 2  | w -> 2w -> 4w          | |
    | 3     | 4w -> 8w, CSA layer    | 1/8 grid, consistency taps |
    | 4..L  | 8w -> 8w               | the last is innermost |
    """

    def __init__(self, size: int, ngf: int, in_ch: int = 6, out_ch: int = 3) -> None:
        super().__init__()
        downs = round(math.log2(size))
        if 2**downs != size or downs < CSA_LEVEL + 1:
            raise ValueError(f"CSA needs a power-of-two image size >= 16, got {size}")
        block = RefineBlock(8 * ngf, 8 * ngf, None)
        for _ in range(downs - CSA_LEVEL - 1):
            block = RefineBlock(8 * ngf, 8 * ngf, block)
        block = RefineBlock(4 * ngf, 8 * ngf, block, csa=True)
        block = RefineBlock(ngf, 2 * ngf, RefineBlock(2 * ngf, 4 * ngf, block))
        self.stem = nn.Conv2d(in_ch, ngf, 3, 1, 1)
        self.body = block
        self.head = nn.Sequential(nn.ReLU(True), nn.ConvTranspose2d(2 * ngf, out_ch, 3, 1, 1), nn.Tanh())

    @property
    def csa_block(self) -> RefineBlock:
        return self.body.sub.sub

    def forward(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """x [B,6,H,W] in [-1,1]; ``hole`` is the 1/8-grid mask from :func:`feature_hole`."""
        return self.head(self.body(self.stem(x), hole))


# ------------------------------------------------------------------------------------------ discriminators
def feature_discriminator(in_ch: int = 256, width: int = 512) -> nn.Sequential:
    """The official ``PFDiscriminator`` on VGG relu3_3: conv4 s2 x3, IN on the second."""
    return nn.Sequential(
        nn.Conv2d(in_ch, width, 4, 2, 1),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(width, width, 4, 2, 1),
        InstanceNorm2d(width),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(width, width, 4, 2, 1),
    )


def ragan_ls(pred_a: torch.Tensor, pred_b: torch.Tensor) -> torch.Tensor:
    """Relativistic-average LSGAN: pred_a should beat pred_b's mean by 1 and vice versa.
    D loss: ragan_ls(real, fake); G loss: ragan_ls(fake, real)."""
    return (torch.mean((pred_a - pred_b.mean() - 1) ** 2) + torch.mean((pred_b - pred_a.mean() + 1) ** 2)) / 2


# --------------------------------------------------------------------------------------------------- VGG
class VGGTaps(nn.Module):
    """Frozen VGG-16 returning named relu outputs (relu3_3 for the feature D, relu4_3 & co. for the
    consistency target). Weights are found as for :class:`bench.nn.vgg.VGGFeatures`. Without a file the
    kept layers get timm's VGG init (Kaiming normal, fan-out) from seed 0, with a warning; the unused
    classifier (102M parameters) is built on the meta device, so this costs no time."""

    def __init__(self, names: tuple[str, ...], weights=None) -> None:
        super().__init__()
        import timm

        depth = max(VGG_TAPS[n] for n in names) + 1
        if weights is not None:
            model = timm.create_model("vgg16", pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)))
            self.features = model.features[:depth]
            self.source = {"backbone": "timm:vgg16", "weights": str(weights), "sha256": file_sha256(weights)}
        else:
            with torch.device("meta"):
                model = timm.create_model("vgg16", pretrained=False)
            self.features = model.features[:depth].to_empty(device="cpu")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                for m in self.features:
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                        nn.init.zeros_(m.bias)
            self.source = {"backbone": "timm:vgg16", "weights": "random-init(seed=0)", "sha256": None}
            warnings.warn("CSA: no VGG-16 weights file configured; VGG losses use a fixed random VGG-16", stacklevel=2)
        self.names = names
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGTaps:
        return super().train(False)

    def forward(self, images_pm1: torch.Tensor) -> dict[str, torch.Tensor]:
        x = ((images_pm1 + 1) / 2 - self.mean) / self.std
        wanted = {VGG_TAPS[n]: n for n in self.names}
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x
        return out


# ------------------------------------------------------------------------------------------------ method
@dataclass(frozen=True)
class CSAOptions(Options):
    """CSA's options. Defaults = the official code (paper profile); ``quick`` = CPU widths and batch."""

    ngf: int = option(
        64, "generator base channels; 8*ngf must match a VGG-16 layer for the consistency loss", choices=(8, 16, 32, 64)
    )
    ndf: int = option(64, "discriminator base channels (the feature D has 8*ndf)", min=1)
    batch_size: int = option(1, "training batch size (official 1)", min=1)
    lr: float = option(2e-4, "Adam learning rate of generators and discriminators", min=0.0)
    beta1: float = option(0.5, "Adam beta1 (beta2 is 0.999)", min=0.0, below=1.0)
    lambda_l1: float = option(100.0, "weight of the L1 on the rough and refined outputs", min=0.0)
    gan_weight: float = option(0.2, "weight of the generator's RaLSGAN terms", min=0.0)
    consistency_weight: float = option(1.0, "weight of the consistency loss at the CSA level", min=0.0)
    threshold: float = option(
        5 / 16, "share of hole pixels above which a 1/8-grid cell is a hole (official 5/16)", min=0.0, max=1.0
    )
    n_layers_d: int = option(3, "stride-2 conv layers of the image PatchGAN (3 = 70x70)", min=1)
    vgg_weights: str = option("", "local VGG-16 weights file ('' = --weights-dir or BENCH_VGG16_WEIGHTS, else random)")

    profiles = {
        "quick": {"ngf": 16, "ndf": 16, "batch_size": 4},
        "standard": {"ngf": 32, "ndf": 32, "batch_size": 8},
    }


class CSAMethod(Method):
    """Trains rough + refinement nets and both discriminators on paired batches with the true masks."""

    Options = CSAOptions
    # quick and standard: minutes on a 2-core CPU (docs/methods.md section 14)
    default_steps = {"quick": 150, "standard": 1_200, "paper": 100_000}

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.cfg: CSAOptions = ctx.config
        self.consistency_layer = CONSISTENCY_LAYER[8 * self.cfg.ngf]
        device = ctx.device
        self.rough = rough_unet(ctx.image_size, self.cfg.ngf).to(device)
        self.refine = RefineUNet(ctx.image_size, self.cfg.ngf).to(device)
        self.rough.apply(normal_init)
        self.refine.apply(normal_init)
        self.fill = (torch.tensor(FILL_RGB, device=device).view(1, 3, 1, 1)) * 2 - 1
        self.d_image = self.d_feature = self.vgg = None
        self.opt_g = self.opt_d = None
        self.data = None

    def setup_training(self, data) -> None:
        cfg, device = self.cfg, self.ctx.device
        self.data = data
        self.d_image = patch_discriminator(3, cfg.ndf, cfg.n_layers_d, norm="instance_affine").to(device)
        self.d_feature = feature_discriminator(256, 8 * cfg.ndf).to(device)
        self.d_image.apply(normal_init)
        self.d_feature.apply(normal_init)
        weights = find_vgg_weights(cfg.vgg_weights or None, self.ctx.weights_dir)
        self.vgg = VGGTaps(("relu3_3", self.consistency_layer), weights).to(device)
        betas = (cfg.beta1, 0.999)
        g_params = list(self.rough.parameters()) + list(self.refine.parameters())
        d_params = list(self.d_image.parameters()) + list(self.d_feature.parameters())
        self.opt_g = torch.optim.Adam(g_params, lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(d_params, lr=cfg.lr, betas=betas)

    def generate(self, masked01: torch.Tensor, hole: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[0,1] image with hole, hole 1 = occluded -> (rough, refined), both [-1,1], full frames."""
        x = (masked01 * 2 - 1) * (1 - hole) + self.fill * hole
        rough = self.rough(x)
        pasted = rough.detach() * hole + x * (1 - hole)  # the official pastes P's output as data
        refined = self.refine(torch.cat([pasted, x], 1), feature_hole(hole, CSA_LEVEL, self.cfg.threshold))
        return rough, refined

    def consistency(self, target: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """MSE over the 1/8-grid hole between each CSA-level tap and the ground truth's VGG features."""
        taps = self.refine.csa_block.taps
        fh = feature_hole(hole, CSA_LEVEL, self.cfg.threshold)
        target = F.adaptive_avg_pool2d(target, fh.shape[-2:]) * fh
        return sum(F.mse_loss(t * fh, target) for t in taps)

    def train_step(self, step: int) -> dict[str, float]:
        device = self.ctx.device
        self.rough.train()
        self.refine.train()
        batch = self.data.paired(self.cfg.batch_size)
        gt01 = batch.clean.to(device)
        hole = (batch.mask.to(device) > 0.5).float()
        gt = gt01 * 2 - 1
        rough, refined = self.generate(gt01 * (1 - hole), hole)
        with torch.no_grad():
            real_feats = self.vgg(gt)
        fake_relu3 = self.vgg(refined)["relu3_3"]

        d_img = ragan_ls(self.d_image(gt), self.d_image(refined.detach()))
        d_feat = ragan_ls(self.d_feature(real_feats["relu3_3"]), self.d_feature(fake_relu3.detach()))
        loss_d = 0.5 * d_img + 0.5 * d_feat
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        with torch.no_grad():
            real_img, real_feat = self.d_image(gt), self.d_feature(real_feats["relu3_3"])
        gan = ragan_ls(self.d_image(refined), real_img) + ragan_ls(self.d_feature(fake_relu3), real_feat)
        l1 = F.l1_loss(refined, gt) + F.l1_loss(rough, gt)
        cons = self.consistency(real_feats[self.consistency_layer], hole)
        cfg = self.cfg
        loss_g = cfg.lambda_l1 * l1 + cfg.gan_weight * gan + cfg.consistency_weight * cons
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        return {
            "loss_g": loss_g.item(),
            "l1": l1.item(),
            "gan": gan.item(),
            "consistency": cons.item(),
            "loss_d": loss_d.item(),
        }

    def _modules(self) -> dict[str, nn.Module | None]:
        return {"rough": self.rough, "refine": self.refine, "d_image": self.d_image, "d_feature": self.d_feature}

    def parts(self) -> dict[str, Any]:
        return {**self._modules(), "opt_g": self.opt_g, "opt_d": self.opt_d}

    @torch.no_grad()
    def restore(self, images: torch.Tensor, masks: torch.Tensor | None) -> Restoration:
        self.rough.eval()
        self.refine.eval()
        device = self.ctx.device
        images, hole = images.to(device), require_hole("csa", masks, device)
        _, refined = self.generate(images * (1 - hole), hole)
        pred = ((refined + 1) / 2).clamp(0, 1)
        return paste(pred, images, hole)

    def info(self) -> dict[str, Any]:
        return {
            "ngf": self.cfg.ngf,
            "consistency_layer": self.consistency_layer,
            "vgg": self.vgg.source if self.vgg is not None else None,
        }
