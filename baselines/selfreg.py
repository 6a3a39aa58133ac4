"""Self-regularization: Yang, Kim, Wang, Peng, Kuo, "Show, Attend and Translate: Unsupervised Image Translation
with Self-Regularization and Attention" (IEEE TIP 2019, arXiv 1806.06195), OA-GAN's baseline [24].

Identification (docs/methods.md section 4): OA-GAN's reference list is not in the text we have, so [24] is
unconfirmed; Yang et al. is the only paper found that is named for "self-regularization" and has a two-path,
mask-predicting generator (OA-GAN's Fig. 4a). Alternatives considered and not taken: SaGAN (Zhang, Kan, Shan,
Chen, ECCV 2018, from the OA-GAN authors' lab: a spatial-attention network and an attribute-manipulation network,
each a full encoder-decoder, trained with an attribute classifier in the critic; it edits a binary attribute, so
it needs attribute labels and a reverse direction) and DIAT (Li, Zuo, Zhang, arXiv 1610.05586: a mask network
plus an attribute-transform network with adversarial and identity-aware perceptual losses). Neither is named
for self-regularization; both would use the same two-path generator, so the choice changes mostly the losses.

What the sources pin down (the paper's abstract and a reading note of it; its full text and any official code
were not retrievable here, so every number the abstract does not give is our choice, marked "ours"):

- Generator *(paper)*: one network with an attention branch A (a probability map, sigmoid) and a transformation
  branch T (tanh); output ``A * T(x) + (1 - A) * x``. No cycle, no second generator, one critic.
  *(ours)* Layers: :class:`bench.nn.two_path.TwoPathGenerator`, the StarGAN/GANimation trunk (conv7 w, two conv4
  s2, ``res_blocks`` residual blocks, two deconv4 s2; InstanceNorm + ReLU, no bias) with a colour head (conv7,
  tanh) = T and an attention head (conv7, sigmoid) whose ``keep`` is 1 - A. OA-GAN's Fig. 4a draws [23] and
  [24] as this one-trunk, two-head generator; ``branches=separate`` gives each branch its own trunk instead (the
  paper names two branches, G_0 and G_attn, and may mean two networks).
- Objective *(paper)*: ``L_G = l_adv(G(x)) + lambda_reg * l_reg(x, G(x))``, ``l_reg`` a perceptual distance
  between input and output on the low-level layers of an ImageNet VGG (colour, edges and shape must be kept).
  *(ours)* The layers: VGG-16 up to pool1..pool3 (``reg_layers``, 3). The distance (``reg_distance``):
  ``lpips`` (default) unit-normalises each position's feature vector over channels and takes the squared L2,
  averaged over positions and summed over blocks with equal weights, i.e. Zhang et al.'s LPIPS without its
  learned linear weights; scale-free, so one ``lambda_reg`` (1) serves trained and random VGG weights alike.
  ``l1`` is the usual perceptual loss (mean L1 of raw features).
- Critic and adversarial loss *(ours, CycleGAN's recipe; the paper compares with CycleGAN on its data sets)*:
  the 70x70 PatchGAN (``patch_discriminator``, n_layers 3, InstanceNorm), LSGAN, critic loss x 0.5, a pool of 50
  past fakes, N(0, 0.02) init; Adam lr 2e-4, betas (0.5, 0.999), constant for the first half of the steps,
  then linear to 0. Batch 4 and 100k steps (the paper's are not known to us).
- Attention regularisers: none in the paper as far as the sources say; ``lambda_attention`` (mean A, GANimation's
  sparsity term) and ``lambda_attention_tv`` (TV of A) are 0 in the paper profile, used by the quick one.
- Data: domain A = occluded faces from ``TrainData.unpaired`` (natural and synthetic), domain B = clean faces of
  other images; no (occluded, clean) pair of one image, no true mask is read.
- Mask: A itself (1 = changed = occluded). On clean faces the self-regularization pulls the output to the input,
  so A goes to 0 there (or T(x) to x, which the quick profile's sparsity term discourages).

VGG-16 comes from :func:`bench.nn.vgg.find_vgg_weights`: a local ImageNet file, else a fixed random VGG-16 (never
a download). A random VGG still gives a structure-preserving distance: its low-level convolutions are fixed local
filters, so matching their (normalised) responses keeps the input's colours, edges and shapes; the numbers are
not a pretrained VGG's, and the run manifest records which was used.

Deviations, each an option: widths, depth and image size scale the same code from the CPU ``quick`` profile
(64 px) to the ``paper`` profile (128 px); see ``SelfRegOptions.profiles`` for what the quick profile changes and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.data.types import TrainData
from bench.method import Method, MethodContext, Restoration
from bench.nn.gan import GANLoss, ImagePool, patch_discriminator
from bench.nn.init import normal_init
from bench.nn.losses import perceptual_loss, total_variation
from bench.nn.schedules import linear_decay, set_lr
from bench.nn.two_path import GeneratorOutput, Trunk, TwoPathGenerator, mask_head, rgb_head, to_01, to_pm1
from bench.nn.vgg import POOL_SLICES, VGGFeatures, find_vgg_weights
from bench.options import Options, option


@dataclass(frozen=True)
class SelfRegOptions(Options):
    """Self-regularization's options. Defaults = the ``paper`` profile; ``quick`` = the CPU profile."""

    width: int = option(64, "generator stem channels (GANimation/StarGAN trunk: 64)", min=1)
    res_blocks: int = option(6, "residual blocks of the generator trunk (GANimation: 6)", min=0)
    branches: str = option(
        "shared",
        "one trunk with two heads (OA-GAN Fig. 4a) or a separate trunk per branch (T and A)",
        choices=("shared", "separate"),
    )
    d_width: int = option(64, "PatchGAN first-layer channels (CycleGAN: 64)", min=1)
    d_layers: int = option(3, "PatchGAN stride-2 layers (3 = the 70x70 PatchGAN)", min=1)
    gan_mode: str = option(
        "lsgan", "adversarial objective (CycleGAN's lsgan, or vanilla BCE)", choices=("lsgan", "vanilla")
    )
    pool_size: int = option(50, "past fakes the critic also sees (CycleGAN: 50; 0 = none)", min=0)
    batch_size: int = option(4, "training batch size (not given by the paper)", min=1)
    natural_share: float = option(0.5, "share of natural occlusions in each occluded batch", min=0.0, max=1.0)
    lr: float = option(2e-4, "Adam learning rate of both networks (CycleGAN: 2e-4)", min=0.0)
    beta1: float = option(0.5, "Adam beta1", min=0.0, below=1.0)
    beta2: float = option(0.999, "Adam beta2", min=0.0, below=1.0)
    lr_decay_start: float = option(
        0.5, "share of the steps after which lr decays linearly to 0 (CycleGAN: half; 1 = never)", min=0.0, max=1.0
    )
    lambda_adv: float = option(1.0, "weight of the generator's adversarial term", min=0.0)
    lambda_reg: float = option(1.0, "lambda of the self-regularization term l_reg(x, G(x))", min=0.0)
    reg_distance: str = option(
        "lpips", "self-regularization distance: lpips (unit-normalised, squared L2) or l1", choices=("lpips", "l1")
    )
    reg_layers: int = option(
        3, "low-level VGG-16 blocks compared (1..3 = up to pool1..pool3)", min=1, max=len(POOL_SLICES)
    )
    lambda_attention: float = option(0.0, "weight of mean(A), attention sparsity (not in the paper)", min=0.0)
    lambda_attention_tv: float = option(0.0, "weight of TV(A), attention smoothness (not in the paper)", min=0.0)
    vgg_input: str = option(
        "imagenet", "VGG input normalisation: imagenet, or pm1 ([-1,1] fed raw)", choices=("imagenet", "pm1")
    )
    vgg_weights: str = option("", "local VGG-16 weights file ('' = --weights-dir or BENCH_VGG16_WEIGHTS, else random)")

    # quick, the CPU profile: 64 px, narrow networks (width 16, 3 residual blocks, critic width 16), batches of 8, 300
    # steps at lr 5e-4 (the paper-profile 2e-4 moves too little in 300 steps). With lambda_reg 1 and small attention
    # regularisers (mean A x 0.1, TV(A) x 0.01) the occluded region improves on the input while clean faces stay
    # intact; a smaller lambda_reg or weaker attention terms cost the clean faces more than they gain in the region,
    # and in every setting A stays soft over occluders, so its mask IoU at 0.5 is low (measured: docs/methods.md
    # section 4). standard: the quick widths, ten times the steps.
    profiles = {
        "quick": dict(
            width=16,
            res_blocks=3,
            d_width=16,
            batch_size=8,
            lr=5e-4,
            lambda_attention=0.1,
            lambda_attention_tv=0.01,
        )
    }


class TwoBranchGenerator(nn.Module):
    """The ``separate`` variant: T(x) and A from two trunks of the same shape; same output as TwoPathGenerator."""

    def __init__(self, width: int, res_blocks: int) -> None:
        super().__init__()
        self.colour = nn.Sequential(Trunk(width, res_blocks), rgb_head(width))
        self.attention = nn.Sequential(Trunk(width, res_blocks), mask_head(width))
        self.apply(normal_init)

    def forward(self, x: torch.Tensor) -> GeneratorOutput:
        colour, keep = self.colour(x), self.attention(x)
        return GeneratorOutput(keep * x + (1 - keep) * colour, colour, keep)


def lpips_distance(feats_a: list[torch.Tensor], feats_b: list[torch.Tensor], eps: float = 1e-10) -> torch.Tensor:
    """Sum over layers of mean_{b,h,w} ||f_a/|f_a| - f_b/|f_b|||^2, norms over channels (LPIPS, unit weights)."""
    total = 0.0
    for a, b in zip(feats_a, feats_b, strict=True):
        a = a / (a.norm(dim=1, keepdim=True) + eps)
        b = b / (b.norm(dim=1, keepdim=True) + eps)
        total = total + ((a - b) ** 2).sum(dim=1).mean()
    return total


def low_level_features(vgg: VGGFeatures, images01: torch.Tensor, blocks: int) -> list[torch.Tensor]:
    """The first ``blocks`` pooled VGG maps of ``VGGFeatures.forward``, without computing the deeper blocks (the
    deepest one is a third of VGG's cost at pool3)."""
    x = (images01 - vgg.mean) / vgg.std if vgg.input_range == "imagenet" else images01 * 2 - 1
    feats = []
    for block in vgg.slices[:blocks]:
        x = block(x)
        feats.append(x)
    return feats


class SelfRegMethod(Method):
    """One attention/transformation generator against a PatchGAN; mask-free restore, mask = A."""

    Options = SelfRegOptions
    # quick and standard: minutes on a 2-core CPU (docs/methods.md section 14)
    default_steps = {"quick": 300, "standard": 3_000, "paper": 100_000}

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.cfg: SelfRegOptions = ctx.config
        cfg = self.cfg
        self.total_steps = max(1, ctx.total_steps)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            if cfg.branches == "shared":
                self.G: nn.Module = TwoPathGenerator(cfg.width, cfg.res_blocks)
            else:
                self.G = TwoBranchGenerator(cfg.width, cfg.res_blocks)
            self.D = patch_discriminator(3, cfg.d_width, cfg.d_layers, "instance")
            self.D.apply(normal_init)
        self.G.to(ctx.device)
        self.D.to(ctx.device)
        self.gan = GANLoss(cfg.gan_mode)
        self.pool = ImagePool(cfg.pool_size)
        self.vgg: VGGFeatures | None = None
        self.opt_g: torch.optim.Adam | None = None
        self.opt_d: torch.optim.Adam | None = None
        self.data: TrainData | None = None

    # ----------------------------------------------------------------------------------- training
    def setup_training(self, data: TrainData) -> None:
        cfg = self.cfg
        self.data = data
        if self.vgg is None:
            weights = find_vgg_weights(cfg.vgg_weights or None, self.ctx.weights_dir)
            self.vgg = VGGFeatures(weights, input_range=cfg.vgg_input).to(self.ctx.device)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=betas)

    def self_regularization(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``l_reg(x, G(x))`` on the first ``reg_layers`` VGG blocks; ``x`` and ``out`` in [-1, 1]."""
        n = self.cfg.reg_layers
        with torch.no_grad():
            target = low_level_features(self.vgg, to_01(x), n)
        feats = low_level_features(self.vgg, to_01(out), n)
        if self.cfg.reg_distance == "lpips":
            return lpips_distance(feats, target)
        return perceptual_loss(feats, target)

    def generator_losses(self, x: torch.Tensor, out: GeneratorOutput) -> dict[str, torch.Tensor]:
        """The unweighted generator terms for occluded inputs ``x`` (in [-1, 1]) and ``out = G(x)``."""
        attention = 1 - out.keep
        return {
            "adv": self.gan(self.D(out.final), True),
            "reg": self.self_regularization(x, out.final),
            "attention": attention.mean(),
            "attention_tv": total_variation(attention),
        }

    def critic_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """CycleGAN's ``0.5 * (l(D(real), real) + l(D(fake), fake))``; ``fake`` is detached."""
        return 0.5 * (self.gan(self.D(real), True) + self.gan(self.D(fake.detach()), False))

    def weights(self) -> dict[str, float]:
        cfg = self.cfg
        return {
            "adv": cfg.lambda_adv,
            "reg": cfg.lambda_reg,
            "attention": cfg.lambda_attention,
            "attention_tv": cfg.lambda_attention_tv,
        }

    def train_step(self, step: int) -> dict[str, float]:
        if self.data is None or self.opt_g is None or self.opt_d is None:
            raise RuntimeError("selfreg: call setup_training(data) before train_step")
        cfg, dev = self.cfg, self.ctx.device
        set_lr(linear_decay(step, self.total_steps, cfg.lr, cfg.lr_decay_start), self.opt_g, self.opt_d)
        self.G.train()
        batch = self.data.unpaired(cfg.batch_size, cfg.natural_share)
        x = to_pm1(batch.occluded.to(dev))
        real = to_pm1(batch.clean.to(dev))

        out = self.G(x)
        self.D.requires_grad_(False)
        terms = self.generator_losses(x, out)
        weights = self.weights()
        g_total = sum(weights[k] * v for k, v in terms.items())
        self.opt_g.zero_grad(set_to_none=True)
        g_total.backward()
        self.opt_g.step()

        self.D.requires_grad_(True)
        d_loss = self.critic_loss(real, self.pool.query(out.final.detach()))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        result = {f"g_{k}": v.item() for k, v in terms.items()}
        result.update(g_total=g_total.item(), d_loss=d_loss.item())
        return result

    # ------------------------------------------------------------------------------ checkpoints
    def parts(self) -> dict[str, Any]:
        return {"G": self.G, "D": self.D, "opt_g": self.opt_g, "opt_d": self.opt_d, "pool": self.pool}

    @torch.no_grad()
    def restore(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Restoration:
        """Mask-free (``masks`` is ignored): the output ``A * T(x) + (1 - A) * x`` and the attention A."""
        self.G.eval()
        out = self.G(to_pm1(images.to(self.ctx.device)))
        final = to_01(out.final).clamp(0, 1).to(images.device)
        return Restoration(final, (1 - out.keep).clamp(0, 1).to(images.device))

    def info(self) -> dict[str, Any]:
        if self.vgg is not None:
            vgg = self.vgg.source
        else:
            weights = find_vgg_weights(self.cfg.vgg_weights or None, self.ctx.weights_dir)
            vgg = {"backbone": "timm:vgg16", "weights": str(weights) if weights else "random-init(seed=0)"}
        return {"branches": self.cfg.branches, "reg_distance": self.cfg.reg_distance, "vgg": vgg}
