"""Yeh et al. (CVPR 2017), "Semantic image inpainting with deep generative models" (OA-GAN ref. [25]).

Training is a plain DCGAN on clean faces. Restoration has no feed-forward path: per image, latent codes z
are optimised so that G(z) matches the known pixels around the hole (weighted context loss) and looks real
to D (prior loss); the best candidate is pasted (or Poisson-blended) into the hole. That costs
``iterations`` G+D forward/backward passes per image, the cost OA-GAN's feed-forward design avoids.

Facts from the authors' code (moodoki/semantic_image_inpainting) and bamos/dcgan-completion are in
docs/methods.md section 9. Differences kept as options: ``weighting=paper`` (default) is W = known * box(hole)
as the paper writes it; ``weighting=official`` is moodoki's known * box(known); ``none`` is bamos' plain
known-pixel mask. ``blend=alpha`` (default) pastes m*G(z) + (1-m)*y; ``blend=poisson`` is the authors'
default, solved here by our own batched solver. All options: :class:`YehOptions`.

Each face's initial latents come from a generator seeded by the run's seed and that face
(:func:`baselines.seeding.sample_generators`), so its completion does not depend on the batch it is in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from baselines.seeding import sample_generators
from bench.method import Method, MethodContext, Restoration, require_hole
from bench.nn.gan import GANLoss
from bench.options import Options, option

if TYPE_CHECKING:
    from bench.data.types import TrainData

WEIGHTINGS = ("paper", "official", "none")
BLENDS = ("alpha", "poisson")


def _levels(image_size: int) -> int:
    """Number of x2 upsamplings from the 4x4 seed to ``image_size`` (64 px: 4, the DCGAN paper's depth)."""
    n = round(math.log2(image_size / 4))
    if image_size < 16 or 4 * 2**n != image_size:
        raise ValueError(f"DCGAN needs a power-of-two image size >= 16, got {image_size}")
    return n


def _channels(image_size: int, width: int) -> list[int]:
    """Feature widths from 4x4 upwards: 8w, 4w, 2w, w, then w again for each extra level (128 px)."""
    return [max(8 * width >> k, width) for k in range(_levels(image_size))]


def _init_dcgan(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) weights, BN scale N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """z [B,z_dim] in [-1,1] -> image [B,3,S,S] in [-1,1].

    | layer        | output (S=64, w=64) |
    | linear+BN+ReLU | 4x4x512           |
    | deconv4 s2 +BN+ReLU | 8x8x256, 16x16x128, 32x32x64 |
    | deconv4 s2 + tanh | 64x64x3        |
    """

    def __init__(self, image_size: int = 64, z_dim: int = 100, width: int = 64) -> None:
        super().__init__()
        chans = _channels(image_size, width)
        self.z_dim = z_dim
        self.project = nn.Sequential(
            nn.Linear(z_dim, chans[0] * 16, bias=False),
            nn.Unflatten(1, (chans[0], 4, 4)),
            nn.BatchNorm2d(chans[0]),
            nn.ReLU(True),
        )
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            up = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)
            layers += [up, nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(chans[-1], 3, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self.apply(_init_dcgan)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(z))


class DCGANDiscriminator(nn.Module):
    """image [B,3,S,S] in [-1,1] -> logit [B]; the generator mirrored (first conv without BN)."""

    def __init__(self, image_size: int = 64, width: int = 64) -> None:
        super().__init__()
        chans = _channels(image_size, width)[::-1]  # w, 2w, 4w, 8w (64 px)
        layers: list[nn.Module] = [nn.Conv2d(3, chans[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            down = nn.Conv2d(cin, cout, 4, 2, 1, bias=False)
            layers += [down, nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True)]
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(chans[-1] * 16, 1))
        self.apply(_init_dcgan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten()


def context_weights(hole: torch.Tensor, window: int = 7, weighting: str = "paper") -> torch.Tensor:
    """W [B,1,H,W] for the context loss; ``hole`` is 1 where occluded.

    paper: known pixels weighted by the fraction of hole pixels in their ``window`` neighbourhood, so only
    the band around the hole constrains z; official: by the fraction of known pixels; none: known pixels, 1.
    """
    known = 1 - hole
    if weighting == "none":
        return known
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    source = hole if weighting == "paper" else known
    r = window // 2
    return known * F.avg_pool2d(F.pad(source, (r, r, r, r), mode="reflect"), window, stride=1)


class SearchConfig(NamedTuple):
    """The latent search's settings (validated where they come from: :class:`YehOptions`)."""

    iterations: int = 1500
    candidates: int = 16
    lr: float = 0.01
    lambda_p: float = 0.003
    window: int = 7
    weighting: str = "paper"


class SearchResult(NamedTuple):
    images: torch.Tensor  # [B,3,H,W] in [-1,1]: G(z_hat) of the best candidate per image
    context: torch.Tensor  # [B]: its final context loss
    history: torch.Tensor  # [iterations]: mean context loss over all candidates, per iteration


def search_latents(
    generator: DCGANGenerator,
    discriminator: DCGANDiscriminator,
    target: torch.Tensor,
    hole: torch.Tensor,
    cfg: SearchConfig,
    rng: torch.Generator | Sequence[torch.Generator],
) -> SearchResult:
    """Optimise ``cfg.candidates`` independent z per image (all images at once) with Adam, z kept in [-1,1].

    ``target`` [B,3,H,W] in [-1,1]; ``hole`` [B,1,H,W], 1 = occluded. Loss per candidate:
    ||W * (G(z) - y)||_1 + lambda_p * log(1 - D(G(z))). Networks must be in eval mode (BN then treats
    candidates independently); only z receives gradients. ``rng``: one CPU generator for the whole batch,
    or one per image (each image's initial z then depends on its own generator only).
    """
    k = cfg.candidates
    y = target.repeat_interleave(k, 0)
    w = context_weights(hole, cfg.window, cfg.weighting).repeat_interleave(k, 0)
    if isinstance(rng, torch.Generator):
        z0 = torch.rand(len(y), generator.z_dim, generator=rng)
    else:
        if len(rng) != len(target):
            raise ValueError(f"search_latents: {len(rng)} generators for {len(target)} images")
        z0 = torch.cat([torch.rand(k, generator.z_dim, generator=g) for g in rng])
    z0 = z0.mul_(2).sub_(1)
    z = z0.to(target.device).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=cfg.lr)
    history = []
    for _ in range(cfg.iterations):
        fake = generator(z)
        context = (w * (fake - y)).abs().flatten(1).sum(1)
        prior = -F.softplus(discriminator(fake))  # log(1 - sigmoid(logit))
        (grad,) = torch.autograd.grad((context + cfg.lambda_p * prior).sum(), z)
        z.grad = grad
        opt.step()
        with torch.no_grad():
            z.clamp_(-1, 1)
        history.append(context.detach().mean())
    with torch.no_grad():
        fake = generator(z)
        context = (w * (fake - y)).abs().flatten(1).sum(1).view(-1, k)
        best = context.argmin(1) + torch.arange(len(context), device=z.device) * k
    hist = torch.stack(history).cpu() if history else torch.zeros(0)
    return SearchResult(fake[best], context.min(1).values, hist)


def _neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of the 4 neighbours of each pixel; pixels outside the image do not exist (zero)."""
    cross = x.new_tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    return F.conv2d(x, cross.expand(x.shape[1], 1, 3, 3), padding=1, groups=x.shape[1])


def poisson_blend(pred: torch.Tensor, image: torch.Tensor, hole: torch.Tensor, tol: float = 1e-5) -> torch.Tensor:
    """Gradient-domain paste of ``pred`` into ``image`` over ``hole`` (Perez et al. 2003), batched.

    Inside the hole, f solves the discrete Poisson equation lap(f) = lap(pred) with f = image on the hole's
    boundary (image borders act as Neumann boundaries); solved by conjugate gradient, the system being
    symmetric positive definite. Our own solver: cv2.seamlessClone's placement of the mask differs between
    OpenCV versions and it drops mask pixels on the image border.
    """
    h = hole.expand_as(pred)
    count = _neighbour_sum(torch.ones_like(pred))  # neighbours inside the image

    def laplace_in_hole(x: torch.Tensor) -> torch.Tensor:
        return h * (count * x - _neighbour_sum(h * x))

    rhs = h * (count * pred - _neighbour_sum(pred) + _neighbour_sum((1 - h) * image))
    x = h * pred  # warm start: the plain paste
    r = rhs - laplace_in_hole(x)
    p = r.clone()
    rs = (r * r).sum((2, 3), keepdim=True)
    limit = (tol**2) * (rhs * rhs).sum((2, 3), keepdim=True).clamp_min(1e-12)
    for i in range(4 * max(pred.shape[-2:])):
        ap = laplace_in_hole(p)
        alpha = rs / (p * ap).sum((2, 3), keepdim=True).clamp_min(1e-30)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).sum((2, 3), keepdim=True)
        if i % 8 == 0 and bool((rs_new <= limit).all()):
            break
        p = r + rs_new / rs.clamp_min(1e-30) * p
        rs = rs_new
    return h * x + (1 - h) * image


@dataclass(frozen=True)
class YehOptions(Options):
    """Yeh's options: the DCGAN (paper profile = DCGAN-tensorflow's recipe) and the latent search (the
    paper's); ``quick`` = CPU width, batch and a shorter search."""

    z_dim: int = option(100, "latent size of the DCGAN", min=1)
    width: int = option(64, "DCGAN base channels (G's last and D's first layer)", min=1)
    batch_size: int = option(64, "DCGAN training batch size", min=1)
    lr: float = option(2e-4, "DCGAN Adam learning rate", min=0.0)
    beta1: float = option(0.5, "DCGAN Adam beta1 (beta2 is 0.999)", min=0.0, below=1.0)
    iterations: int = option(1500, "Adam steps on z per image at restore time", min=0)
    candidates: int = option(16, "independent z searched per image; the best context loss wins", min=1)
    z_lr: float = option(0.01, "Adam learning rate of the latent search", min=0.0)
    lambda_p: float = option(0.003, "weight of the prior loss log(1 - D(G(z)))", min=0.0)
    window: int = option(7, "side of the context-weight box filter (odd)", min=1)
    weighting: str = option(
        "paper", "context weights: paper (near the hole), official (moodoki), none (known pixels)", choices=WEIGHTINGS
    )
    search_batch: int = option(256, "most images x candidates optimised at once (memory cap)", min=1)
    blend: str = option("alpha", "paste G(z) into the hole: alpha, or poisson (the authors' default)", choices=BLENDS)

    profiles = {
        "quick": {"width": 16, "batch_size": 32, "iterations": 100, "candidates": 4},
        "standard": {"width": 32},
    }


class YehMethod(Method):
    """DCGAN trained on clean faces; restoration by latent search, then blending into the hole."""

    Options = YehOptions
    compilable = False  # restore() searches the latent by gradient descent through the generator
    # paper: ~25 epochs of CelebA's train split at batch 64, the usual DCGAN-tensorflow recipe behind the authors'
    # model; quick and standard: minutes on a 2-core CPU (docs/methods.md section 14)
    default_steps = {"quick": 200, "standard": 3_600, "paper": 60_000}

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.cfg: YehOptions = ctx.config
        o, size = self.cfg, ctx.image_size
        if o.window % 2 != 1:
            raise ValueError(f"yeh: option window must be odd (a centred box filter), got {o.window}")
        self.generator = DCGANGenerator(size, o.z_dim, o.width).to(ctx.device)
        self.discriminator = DCGANDiscriminator(size, o.width).to(ctx.device)
        self.gan_loss = GANLoss("vanilla")  # DCGAN: BCE on logits
        self.opt_g: torch.optim.Adam | None = None
        self.opt_d: torch.optim.Adam | None = None
        self.data: TrainData | None = None

    @property
    def search(self) -> SearchConfig:
        """The latent search's settings, from the options."""
        o = self.cfg
        return SearchConfig(o.iterations, o.candidates, o.z_lr, o.lambda_p, o.window, o.weighting)

    def setup_training(self, data: TrainData) -> None:
        cfg = self.cfg
        self.data = data
        betas = (cfg.beta1, 0.999)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr, betas=betas)

    def _noise(self, n: int) -> torch.Tensor:
        return torch.rand(n, self.cfg.z_dim, device=self.ctx.device) * 2 - 1

    def train_step(self, step: int) -> dict[str, float]:
        """One DCGAN step: D on real vs fake (BCE), then G with the non-saturating loss."""
        self.generator.train()
        self.discriminator.train()
        real = self.data.clean_batch(self.cfg.batch_size).images.to(self.ctx.device) * 2 - 1
        fake = self.generator(self._noise(len(real)))
        logit_real = self.discriminator(real)
        logit_fake = self.discriminator(fake.detach())
        loss_d = self.gan_loss(logit_real, True) + self.gan_loss(logit_fake, False)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        logit_gen = self.discriminator(fake)
        loss_g = self.gan_loss(logit_gen, True)  # the non-saturating generator loss
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        return {
            "d": loss_d.item(),
            "g": loss_g.item(),
            "d_real": torch.sigmoid(logit_real).mean().item(),
            "d_fake": torch.sigmoid(logit_fake).mean().item(),
        }

    def parts(self) -> dict[str, Any]:
        return {
            "generator": self.generator,
            "discriminator": self.discriminator,
            "opt_g": self.opt_g,
            "opt_d": self.opt_d,
        }

    def complete(self, images: torch.Tensor, masks: torch.Tensor) -> SearchResult:
        """Latent search for a batch in chunks of ``search_batch`` candidates; G(z_hat) in [-1,1]."""
        self.generator.eval()
        self.discriminator.eval()
        hole = (masks > 0.5).float()
        rngs = sample_generators(self.ctx.seed, images, hole)  # per face: the same z0 in any batch or chunk
        search = self.search
        per_chunk = max(1, self.cfg.search_batch // search.candidates)
        parts = []
        with torch.enable_grad():
            for i in range(0, len(images), per_chunk):
                y, h = images[i : i + per_chunk] * 2 - 1, hole[i : i + per_chunk]
                chunk_rngs = rngs[i : i + per_chunk]
                parts.append(search_latents(self.generator, self.discriminator, y, h, search, chunk_rngs))
        return SearchResult(
            torch.cat([p.images for p in parts]),
            torch.cat([p.context for p in parts]),
            torch.stack([p.history for p in parts]).mean(0),
        )

    def restore(self, images: torch.Tensor, masks: torch.Tensor | None) -> Restoration:
        hole = require_hole("yeh", masks)
        todo = hole.flatten(1).any(1)  # faces without a hole cost nothing
        out = images.clone()
        if todo.any():
            x, m = images[todo], masks[todo]
            pred = (self.complete(x, m).images + 1) / 2
            if self.cfg.blend == "poisson":
                pred = poisson_blend(pred, x, hole[todo].to(x.dtype))
            out[todo] = (m * pred + (1 - m) * x).clamp(0, 1)
        return Restoration(out)

    def info(self) -> dict[str, Any]:
        return {
            "width": self.cfg.width,
            "z_dim": self.cfg.z_dim,
            "blend": self.cfg.blend,
            "search_batch": self.cfg.search_batch,
            **self.search._asdict(),
        }
