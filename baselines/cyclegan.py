"""CycleGAN: Zhu, Park, Isola, Efros (ICCV 2017), "Unpaired image-to-image translation using cycle-consistent
adversarial networks", as OA-GAN's paper compares against it (Fig. 7, Fig. 11).

Domain A = occluded faces (natural and synthetic occlusions), domain B = clean faces of *other* images: never a
pair of one image (``TrainData.unpaired``). De-occlusion is G_A: A -> B; no mask is predicted or read. Facts
from junyanz/pytorch-CycleGAN-and-pix2pix (``models/cycle_gan_model.py``, ``models/networks.py``,
``options/*.py``), summarised in docs/methods.md section 2:

| part        | what                                                                                 | source          |
|-------------|--------------------------------------------------------------------------------------|-----------------|
| G_A, G_B    | ResnetGenerator: reflect-pad conv7 ngf, 2x [conv3 s2], n ResnetBlocks (reflect pad,  | networks.py     |
|             | conv3-IN-ReLU-conv3-IN + x), 2x [deconv3 s2 p1 op1], reflect-pad conv7 -> 3, tanh;  |                 |
|             | IN without affine or running stats, convs with bias, no dropout; 6 blocks below     | paper, options  |
|             | 256 px (the paper's 128x128 setting), 9 at 256                                       |                 |
| D_A, D_B    | 70x70 PatchGAN (``bench.nn.gan.patch_discriminator``, n_layers 3, IN)                | networks.py     |
| adversarial | LSGAN: D 0.5 ((D(real)-1)^2 + D(fake)^2); G (D(G(x))-1)^2                            | cycle_gan_model |
| cycle       | L1(G_B(G_A(a)), a) x lambda_A 10, L1(G_A(G_B(b)), b) x lambda_B 10                  | cycle_gan_model |
| identity    | L1(G_A(b), b) x lambda_B x 0.5, L1(G_B(a), a) x lambda_A x 0.5                      | cycle_gan_model |
| image pool  | 50 earlier fakes per critic (``bench.nn.gan.ImagePool``; checkpointed)               | image_pool.py   |
| optimiser   | Adam 2e-4, betas (0.5, 0.999); one for both G, one for both D; G step then D step    | cycle_gan_model |
| schedule    | lr constant for n_epochs, then linear to 0 over n_epochs_decay (= n_epochs): here    | networks.py     |
|             | per step over ``ctx.total_steps``, factor 1 - max(0, s + 1 - n) / (T - n + 1)        |                 |
| init        | N(0, 0.02) conv weights, zero biases                                                 | networks.py     |
| data        | [-1, 1], random horizontal flip; batch 1                                             | options         |

Deviations, each an option recorded in the manifest:
- ``natural_share``: how domain A mixes natural and synthetic occlusions is not given by OA-GAN's paper; half and
  half by default (the harness's unpaired default).
- no resize-and-crop (load 286, crop 256): the faces are aligned at the benchmark's size, as the authors' advice
  for 128 px faces (``--preprocess none``); the flip is kept.
- the schedule is per step, not per epoch (the harness counts steps).
- ``quick`` (CPU, 64 px): see ``CycleGANOptions.profiles`` for the widths, depth, batch and weights, and why.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.data.types import TrainData
from bench.method import Method, MethodContext, Restoration
from bench.nn.gan import GANLoss, ImagePool, patch_discriminator
from bench.nn.init import normal_init
from bench.nn.norm import InstanceNorm2d
from bench.nn.schedules import set_lr
from bench.nn.two_path import to_01, to_pm1
from bench.options import Options, option


def _norm(kind: str, channels: int) -> nn.Module:
    """The official ``get_norm_layer``: InstanceNorm without affine or running statistics, or BatchNorm."""
    return InstanceNorm2d(channels) if kind == "instance" else nn.BatchNorm2d(channels)


class ResnetBlock(nn.Module):
    """reflect-pad conv3-norm-ReLU, reflect-pad conv3-norm, plus the input (no dropout: CycleGAN's default)."""

    def __init__(self, channels: int, norm: str = "instance") -> None:
        super().__init__()
        bias = norm == "instance"  # BatchNorm has its own shift
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            _norm(norm, channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            _norm(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Johnson et al.'s transformation net as CycleGAN builds it: [-1,1] image in, [-1,1] image out, same size
    (a multiple of 4). InstanceNorm without affine parameters or running statistics, so train and eval agree
    and each image is processed on its own."""

    def __init__(self, ngf: int = 64, n_blocks: int = 9, channels: int = 3, norm: str = "instance") -> None:
        super().__init__()
        bias = norm == "instance"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels, ngf, 7, bias=bias),
            _norm(norm, ngf),
            nn.ReLU(True),
        ]
        for mult in (1, 2):  # two stride-2 downsamples: ngf -> 2 ngf -> 4 ngf
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1, bias=bias),
                _norm(norm, ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock(ngf * 4, norm) for _ in range(n_blocks)]
        for mult in (4, 2):  # two transposed-conv upsamples back to ngf
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1, bias=bias),
                _norm(norm, ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def default_blocks(image_size: int) -> int:
    """The authors' choice: 6 residual blocks for 128x128 images (and below), 9 for 256x256 and above."""
    return 9 if image_size >= 256 else 6


@dataclass(frozen=True)
class CycleGANOptions(Options):
    """CycleGAN's options. Defaults = the authors' code (paper profile); ``quick`` = the CPU profile."""

    ngf: int = option(64, "generator stem channels (official 64)", min=1)
    ndf: int = option(64, "critic first-layer channels (official 64)", min=1)
    n_blocks: int | None = option(None, "generator residual blocks (None = 6 below 256 px, 9 at 256 px)", min=0)
    n_layers_d: int = option(3, "PatchGAN stride-2 levels (3 = the 70x70 PatchGAN)", min=1)
    norm: str = option("instance", "normalisation of G and D (official --norm instance)", choices=("instance", "batch"))
    batch_size: int = option(1, "training batch size (official 1)", min=1)
    lr: float = option(2e-4, "Adam learning rate of generators and critics (official 2e-4)", min=0.0)
    beta1: float = option(0.5, "Adam beta1 (official 0.5)", min=0.0, below=1.0)
    beta2: float = option(0.999, "Adam beta2 (official 0.999)", min=0.0, below=1.0)
    decay_start: float = option(
        0.5,
        "share of the steps at constant lr before the linear decay to 0 (official: n_epochs = n_epochs_decay)",
        min=0.0,
        max=1.0,
    )
    gan_mode: str = option("lsgan", "adversarial objective (official lsgan)", choices=("lsgan", "vanilla"))
    lambda_a: float = option(10.0, "weight of the cycle loss A -> B -> A (official 10)", min=0.0)
    lambda_b: float = option(10.0, "weight of the cycle loss B -> A -> B (official 10)", min=0.0)
    lambda_identity: float = option(0.5, "identity loss weight relative to lambda_a / lambda_b (official 0.5)", min=0.0)
    pool_size: int = option(50, "earlier fakes each critic also sees (official 50; 0 = none)", min=0)
    flip: bool = option(True, "random horizontal flip of training images (official: on)")
    natural_share: float = option(
        0.5, "share of domain A that is natural occlusions; the rest are synthetic", min=0.0, max=1.0
    )

    # quick, the CPU profile: 64 px, 300 steps, narrow nets (ngf = ndf = 16, 3 blocks), batch 4, lr 1e-3 (which
    # beats the official lr and batch 1 at this budget; measured: docs/methods.md section 2). CycleGAN
    # re-synthesises every pixel through its bottleneck (no path copies the input), so within minutes its identity
    # reconstruction stays poor: the quick profile shows the method's failure mode, not its best.
    # standard: the quick widths, ten times the steps.
    profiles = {"quick": dict(ngf=16, ndf=16, n_blocks=3, batch_size=4, lr=1e-3)}


class CycleGANMethod(Method):
    """Two generators and two PatchGAN critics trained on unpaired occluded / clean faces; restores with G_A."""

    Options = CycleGANOptions
    # quick and standard: minutes on a 2-core CPU (docs/methods.md section 14)
    default_steps = {"quick": 300, "standard": 3_000, "paper": 100_000}

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.cfg: CycleGANOptions = ctx.config
        o = self.cfg
        if ctx.image_size % 4:
            raise ValueError(f"cyclegan: the generator needs an image size divisible by 4, got {ctx.image_size}")
        self.n_blocks = o.n_blocks if o.n_blocks is not None else default_blocks(ctx.image_size)
        self.total_steps = max(1, ctx.total_steps)
        dev = ctx.device
        self.G_A = ResnetGenerator(o.ngf, self.n_blocks, norm=o.norm).to(dev)  # occluded -> clean: the de-occluder
        self.G_B = ResnetGenerator(o.ngf, self.n_blocks, norm=o.norm).to(dev)  # clean -> occluded
        self.D_A = patch_discriminator(3, o.ndf, o.n_layers_d, o.norm).to(dev)  # judges domain B (G_A's fakes)
        self.D_B = patch_discriminator(3, o.ndf, o.n_layers_d, o.norm).to(dev)  # judges domain A (G_B's fakes)
        for net in (self.G_A, self.G_B, self.D_A, self.D_B):
            net.apply(normal_init)
        self.gan_loss = GANLoss(o.gan_mode)
        self.data: TrainData | None = None
        self.opt_g: torch.optim.Adam | None = None
        self.opt_d: torch.optim.Adam | None = None
        self.pool_A: ImagePool | None = None  # fakes of domain A (G_B's), for D_B
        self.pool_B: ImagePool | None = None  # fakes of domain B (G_A's), for D_A

    # ----------------------------------------------------------------------------------- training
    def setup_training(self, data: TrainData) -> None:
        o = self.cfg
        self.data = data
        betas = (o.beta1, o.beta2)
        self.opt_g = torch.optim.Adam(itertools.chain(self.G_A.parameters(), self.G_B.parameters()), o.lr, betas)
        self.opt_d = torch.optim.Adam(itertools.chain(self.D_A.parameters(), self.D_B.parameters()), o.lr, betas)
        self.pool_A, self.pool_B = ImagePool(o.pool_size), ImagePool(o.pool_size)

    def weights(self) -> dict[str, float]:
        """Each term's weight in the generator objective (official backward_G): the identity term of G_A compares
        with real B, so it carries lambda_B, and the other one lambda_A."""
        o = self.cfg
        return {
            "g_a": 1.0,
            "g_b": 1.0,
            "cycle_a": o.lambda_a,
            "cycle_b": o.lambda_b,
            "idt_a": o.lambda_b * o.lambda_identity,
            "idt_b": o.lambda_a * o.lambda_identity,
        }

    def lr_factor(self, step: int) -> float:
        """The official ``lambda_rule`` per step: 1 for the first ``decay_start`` share of the steps, then linear
        down to 1 / (decay steps + 1) at the last step. A function of the step alone, so a resumed run agrees."""
        constant = round(self.cfg.decay_start * self.total_steps)
        return 1.0 - max(0, step + 1 - constant) / (self.total_steps - constant + 1)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One unpaired batch in [-1, 1]: occluded faces (A) and clean faces of other images (B), each image
        flipped with probability 1/2 when ``flip`` is on (torch's global generator: checkpointed)."""
        batch = self.data.unpaired(self.cfg.batch_size, self.cfg.natural_share)
        images = []
        for x in (batch.occluded, batch.clean):
            x = x.to(self.ctx.device)
            if self.cfg.flip:
                flip = (torch.rand(len(x)) < 0.5).to(x.device).view(-1, 1, 1, 1)
                x = torch.where(flip, x.flip(-1), x)
            images.append(to_pm1(x))
        return images[0], images[1]

    def generator_losses(
        self, real_a: torch.Tensor, real_b: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The unweighted terms of the generators' objective (official ``forward`` + ``backward_G``) and the two
        fakes (G_A(a), G_B(b)) the critics then see."""
        fake_b = self.G_A(real_a)
        fake_a = self.G_B(real_b)
        terms = {
            "g_a": self.gan_loss(self.D_A(fake_b), True),
            "g_b": self.gan_loss(self.D_B(fake_a), True),
            "cycle_a": F.l1_loss(self.G_B(fake_b), real_a),
            "cycle_b": F.l1_loss(self.G_A(fake_a), real_b),
        }
        if self.cfg.lambda_identity > 0:
            terms["idt_a"] = F.l1_loss(self.G_A(real_b), real_b)
            terms["idt_b"] = F.l1_loss(self.G_B(real_a), real_a)
        return terms, fake_b, fake_a

    def critic_loss(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Official ``backward_D_basic``: the mean of the real and fake terms (the x0.5 slows D relative to G)."""
        return 0.5 * (self.gan_loss(critic(real), True) + self.gan_loss(critic(fake.detach()), False))

    def train_step(self, step: int) -> dict[str, float]:
        if self.data is None or self.opt_g is None or self.opt_d is None:
            raise RuntimeError("cyclegan: call setup_training(data) before train_step")
        set_lr(self.cfg.lr * self.lr_factor(step), self.opt_g, self.opt_d)
        real_a, real_b = self._batch()
        critics = (self.D_A, self.D_B)
        for critic in critics:
            critic.requires_grad_(False)
        terms, fake_b, fake_a = self.generator_losses(real_a, real_b)
        weights = self.weights()
        total = sum(weights[k] * v for k, v in terms.items())
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        for critic in critics:
            critic.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        d_a = self.critic_loss(self.D_A, real_b, self.pool_B.query(fake_b))
        d_a.backward()
        d_b = self.critic_loss(self.D_B, real_a, self.pool_A.query(fake_a))
        d_b.backward()
        self.opt_d.step()
        losses = {k: v.item() for k, v in terms.items()}
        return {"g_total": total.item(), **losses, "d_a": d_a.item(), "d_b": d_b.item()}

    # ------------------------------------------------------------------------------ checkpoints
    def parts(self) -> dict[str, Any]:
        return {
            "G_A": self.G_A,
            "G_B": self.G_B,
            "D_A": self.D_A,
            "D_B": self.D_B,
            "opt_g": self.opt_g,
            "opt_d": self.opt_d,
            "pool_A": self.pool_A,
            "pool_B": self.pool_B,
        }

    @torch.no_grad()
    def restore(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Restoration:
        """Mask-free: ``masks`` is ignored; G_A translates each face on its own (InstanceNorm, no statistics)."""
        self.G_A.eval()
        out = to_01(self.G_A(to_pm1(images.to(self.ctx.device)))).clamp(0, 1)
        return Restoration(out.to(images.device))

    def info(self) -> dict[str, Any]:
        return {"n_blocks": self.n_blocks, "ngf": self.cfg.ngf, "ndf": self.cfg.ndf}
