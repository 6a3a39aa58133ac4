"""GANimation: Pumarola et al. (ECCV 2018), "GANimation: anatomically-aware facial animation from a single image",
adapted to unpaired face de-occlusion as OA-GAN's baseline (Fig. 7). Facts from albertpumarola/GANimation
(``models/ganimation.py``, ``networks/*_wasserstein_gan.py``, ``options/train_options.py``) are in
docs/methods.md section 3.

Generator: :class:`bench.nn.two_path.TwoPathGenerator` with a condition tiled over the image (StarGAN trunk,
colour head C with tanh, attention head A with sigmoid; output ``A * x + (1 - A) * C``, A = 1 keeps the input
pixel). Critic: the StarGAN/GANimation critic (stride-2 4x4 convs with LeakyReLU 0.01, no norm, down to a 2x2
map; a 3x3 patch head and a condition-regression head), the same network as OA-GAN's
(:class:`bench.nn.critic.LabelCritic`), N(0, 0.02) init.

Losses, as the official code computes them (N = images in the batch, images in [-1, 1]):

| network | term | definition | weight |
|---|---|---|---|
| critic | adversarial | -mean D(x) + mean D(G(x, c_t)) | 1 |
| critic | condition | MSE(D_c(x), c_x) / N, on real faces of both domains | 4000 |
| critic | gradient penalty | (L2 norm of grad D(x_hat) - 1)^2, D = the patch map's sum; its own Adam step | 10 |
| generator | adversarial | -mean D(y), y = G(x, c_t) | 1 |
| generator | condition | MSE(D_c(y), c_t) / N | 4000 |
| generator | cycle | mean abs(G(y, c_x) - x), the reconstruction of the source | 10 |
| generator | attention | mean(A_1) + mean(A_2) (both passes; penalises A = 1, the do-nothing solution) | 0.1 |
| generator | attention smoothness | TV(A_1) + TV(A_2), TV = abs(dx) + abs(dy) summed over the batch | 1e-5 |

Adam (lr 1e-4, betas 0.5/0.999) for both; the generator steps once every 5 critic steps (on the 5th, 10th, ...);
the lr stays constant for 2/3 of the budget and decays linearly to 0 over the last third (20 + 10 epochs).

The condition. The paper does not say how OA-GAN conditioned GANimation. Here c = (occluded flag, the data's
attributes): flag 1 for domain A (occluded faces, natural and synthetic), 0 for domain B (clean faces of other
images), then the attributes in [0, 1] (the paper's 10 CelebA attributes on the embedded set). Each source asks
for its own attributes and the other flag (A -> clean, B -> occluded, StarGAN's two-way translation, so the cycle
``G(G(x, c_t), c_x)`` is GANimation's own), with the official U(-0.1, 0.1) noise on the target condition. Why
attributes and not only the flag: they are the only labels the data has beyond the domain; a condition head that
regresses them makes the critic (and through it the generator) keep the face's identity-bearing traits, the role
OA-GAN's own attribute head plays. ``condition=flag`` drops them (a 1-d occlusion-free target). At test time
``restore`` gets no labels: the critic's condition head, trained on real faces of both domains, estimates the
input's attributes (clamped to [0, 1]), and the generator is asked for flag 0 with them. A clean face asked for
flag 0 must come back unchanged (the paper's Fig. 9 check); GANimation never asks that during training, hence
the identity term below.

Deviations (each an option):
- ``lambda_idt``: an L1 identity term ``mean |G(b, c_b) - b|`` on the clean faces asked for their own condition
  (CycleGAN's identity loss; the official code declares ``loss_g_idt`` but never uses it). 0 in the paper profile;
  the quick profile weighs it 100, so clean faces stay intact (A ~ 1) within a few hundred steps (see
  ``GANimationOptions.profiles``);
- ``batch_size`` counts images per domain (each step sees 2 x batch_size); 12 (24 in all) stands for the
  official launch script's 25;
- the lr decays per step, not per epoch; the paper's TV weight (1e-4, issue donydchen/ganimation_replicate#6)
  is ``lambda_mask_smooth=1e-4``; the official code's 1e-5 is the default;
- no horizontal flip (the harness feeds every method the same faces); the critic has log2(size) - 1 layers, so its
  map is 2 x 2 at any size (6 layers at 128 px, as the official one);
- quick profile (64 px, CPU, a few hundred steps): narrower nets, G every critic step and a higher lr; see
  ``GANimationOptions.profiles``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from bench.data.types import TrainData
from bench.method import Method, MethodContext, Restoration
from bench.nn.critic import LabelCritic
from bench.nn.init import normal_init
from bench.nn.losses import gradient_penalty, total_variation
from bench.nn.schedules import linear_decay, set_lr
from bench.nn.two_path import GeneratorOutput, TwoPathGenerator, to_01, to_pm1
from bench.options import Options, option

UNIT_INTERVAL = {"min": 0.0, "max": 1.0}


@dataclass(frozen=True)
class GANimationOptions(Options):
    """GANimation's options. Defaults = the official code (paper profile); ``quick`` = the CPU profile."""

    width: int = option(64, "generator stem channels (official conv_dim 64)", min=1)
    res_blocks: int = option(6, "residual blocks of the generator (official repeat_num 6)", min=0)
    d_width: int = option(64, "critic first-layer channels (official 64)", min=1)
    batch_size: int = option(12, "images per domain per step (2 x 12 ~ the official launch script's 25)", min=1)
    natural_share: float = option(0.5, "share of domain A drawn from the natural (unlabelled) set", **UNIT_INTERVAL)
    condition: str = option(
        "flag_attributes",
        "generator condition: occluded flag + data attributes, or the flag alone",
        choices=("flag_attributes", "flag"),
    )
    cond_noise: float = option(0.1, "U(-a, a) noise on the target condition (official 0.1)", min=0.0)
    lr: float = option(1e-4, "Adam learning rate of both networks (official 1e-4)", min=0.0)
    beta1: float = option(0.5, "Adam beta1 (official 0.5)", min=0.0, below=1.0)
    beta2: float = option(0.999, "Adam beta2 (official 0.999)", min=0.0, below=1.0)
    lr_decay_start: float = option(
        2 / 3, "share of the steps after which the lr decays linearly to 0 (official 20 of 30 epochs)", **UNIT_INTERVAL
    )
    n_critic: int = option(5, "critic steps per generator step (official 5)", min=1)
    lambda_cond: float = option(4000.0, "weight of the condition MSE / N, critic and generator (official)", min=0.0)
    lambda_gp: float = option(10.0, "WGAN-GP gradient-penalty weight (official 10)", min=0.0)
    gp_separate_step: bool = option(True, "the gradient penalty in its own critic Adam step (official)")
    lambda_cyc: float = option(10.0, "weight of the cycle L1 (official 10)", min=0.0)
    lambda_mask: float = option(0.1, "weight of mean(A) on both passes (official 0.1; penalises A = 1)", min=0.0)
    lambda_mask_smooth: float = option(1e-5, "weight of TV(A) summed, both passes (official 1e-5, paper 1e-4)", min=0.0)
    lambda_idt: float = option(0.0, "L1 identity on clean faces asked for their own condition (0 = official)", min=0.0)
    saturate_mask: bool = option(False, "official do_saturate_mask: A -> clamp(0.55 tanh(3 (A - 0.5)) + 0.5, 0, 1)")

    # quick, the CPU profile: 64 px, 300 steps instead of ~33k, narrow nets, G every critic step, lr 3e-4. The
    # identity weight is what keeps clean faces intact; the official saturation of A and a smaller mean(A) weight
    # move neither A nor the clean faces, and A localises no occluder within this budget (measured: docs/methods.md
    # section 3). standard: the quick widths, more steps.
    profiles = {
        "quick": dict(
            width=16, d_width=16, res_blocks=3, batch_size=8, n_critic=1, lr=3e-4, lr_decay_start=0.5, lambda_idt=100
        )
    }


def condition_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The official condition loss: element-mean MSE, divided once more by the batch size."""
    return F.mse_loss(pred, target) / pred.size(0)


def saturate(keep: torch.Tensor) -> torch.Tensor:
    """The official ``do_saturate_mask`` squashing towards 0 and 1 (0.9 -> 0.96, 0.5 stays, 1 -> 0.998)."""
    return torch.clamp(0.55 * torch.tanh(3 * (keep - 0.5)) + 0.5, 0, 1)


def attention_terms(keeps: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of mean(A), sum of TV(A) as sums) over the passes: the official mask and mask-smoothness losses."""
    return sum(a.mean() for a in keeps), sum(total_variation(a, "sum") for a in keeps)


class GANimationMethod(Method):
    """Mask-free at test time: the mask crosses the API as 1 - A."""

    Options = GANimationOptions
    # paper: 30 "epochs" of ~13k occluded CelebA faces (the eyeglasses split) at 12 per domain per step, about 33k
    # critic steps; quick and standard: minutes on a 2-core CPU (docs/methods.md section 14)
    default_steps = {"quick": 300, "standard": 2_000, "paper": 33_000}

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.cfg: GANimationOptions = ctx.config
        self.total_steps = max(1, ctx.total_steps)
        self.attributes = tuple(ctx.attribute_names) if self.cfg.condition == "flag_attributes" else ()
        self.cond_dim = 1 + len(self.attributes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            self.G = TwoPathGenerator(self.cfg.width, self.cfg.res_blocks, self.cond_dim).to(ctx.device)
            self.D = LabelCritic(ctx.image_size, self.cfg.d_width, self.cond_dim).to(ctx.device)
            self.D.apply(normal_init)  # the official init_weights on both networks
        self.opt_g: torch.optim.Adam | None = None
        self.opt_d: torch.optim.Adam | None = None
        self.data: TrainData | None = None
        self.attr_columns: list[int] = []

    def generate(self, x: torch.Tensor, condition: torch.Tensor) -> GeneratorOutput:
        """G(x, c), with the official optional saturation of A applied before the blend."""
        out = self.G(x, condition)
        if not self.cfg.saturate_mask:
            return out
        keep = saturate(out.keep)
        return GeneratorOutput(keep * x + (1 - keep) * out.synth, out.synth, keep)

    # ----------------------------------------------------------------------------------- training
    def setup_training(self, data: TrainData) -> None:
        missing = [a for a in self.attributes if a not in data.attribute_names]
        if missing:
            raise ValueError(f"ganimation: training data lacks attributes {missing}")
        self.attr_columns = [data.attribute_names.index(a) for a in self.attributes]
        self.data = data
        betas = (self.cfg.beta1, self.cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=self.cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.cfg.lr, betas=betas)

    def learning_rate(self, step: int) -> float:
        return linear_decay(step, self.total_steps, self.cfg.lr, self.cfg.lr_decay_start)

    def conditions(self, attributes: torch.Tensor, occluded: bool) -> torch.Tensor:
        """[B, 1 + A]: the occluded flag, then the chosen attribute columns."""
        flag = torch.full((len(attributes), 1), float(occluded))
        return torch.cat([flag, attributes[:, self.attr_columns]], 1).to(self.ctx.device)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sources x (occluded, then clean) in [-1, 1], their real conditions c_x and the noisy targets c_t."""
        cfg, dev = self.cfg, self.ctx.device
        b = self.data.unpaired(cfg.batch_size, cfg.natural_share)
        x = to_pm1(torch.cat([b.occluded, b.clean]).to(dev))
        real = torch.cat([self.conditions(b.occluded_attributes, True), self.conditions(b.clean_attributes, False)])
        target = real.clone()
        target[:, 0] = 1 - real[:, 0]
        if cfg.cond_noise:
            target = target + (torch.rand(target.shape) * 2 - 1).to(dev) * cfg.cond_noise
        return x, real, target

    def train_step(self, step: int) -> dict[str, float]:
        if self.data is None or self.opt_g is None or self.opt_d is None:
            raise RuntimeError("ganimation: call setup_training(data) before train_step")
        set_lr(self.learning_rate(step), self.opt_g, self.opt_d)
        self.G.train()
        self.D.train()
        x, real, target = self.batch()
        update_g = (step + 1) % self.cfg.n_critic == 0  # official: on the n-th, 2n-th, ... iteration
        with torch.set_grad_enabled(update_g):
            out = self.generate(x, target)
        losses = self.critic_step(x, real, out.final.detach())
        if update_g:  # G is unchanged since ``out``: the official code's second forward gives the same images
            losses.update(self.generator_step(x, real, target, out))
        return losses

    def critic_losses(self, x: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        adv_real, cond_real = self.D(x)
        adv_fake, _ = self.D(fake)
        return {"adv": adv_fake.mean() - adv_real.mean(), "cond": condition_mse(cond_real, real)}

    def critic_step(self, x: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        cfg, opt = self.cfg, self.opt_d
        self.D.requires_grad_(True)
        terms = self.critic_losses(x, real, fake)
        loss = terms["adv"] + cfg.lambda_cond * terms["cond"]
        if cfg.gp_separate_step:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss = torch.zeros((), device=x.device)
        gp = gradient_penalty(lambda z: self.D(z).adv, x, fake)  # the patch map's sum, as grad_outputs=ones
        opt.zero_grad(set_to_none=True)
        (loss + cfg.lambda_gp * gp).backward()
        opt.step()
        return {"d_adv": terms["adv"].item(), "d_cond": terms["cond"].item(), "d_gp": gp.item()}

    def generator_losses(
        self, x: torch.Tensor, real: torch.Tensor, target: torch.Tensor, out: GeneratorOutput
    ) -> dict[str, torch.Tensor]:
        """The official terms (unweighted) plus the identity term when it is on."""
        adv, cond = self.D(out.final)
        rec = self.generate(out.final, real)
        mask, smooth = attention_terms((out.keep, rec.keep))
        terms = {
            "adv": -adv.mean(),
            "cond": condition_mse(cond, target),
            "cyc": torch.mean(torch.abs(rec.final - x)),
            "mask": mask,
            "smooth": smooth,
        }
        if self.cfg.lambda_idt:
            clean = real[:, 0] == 0
            terms["idt"] = torch.mean(torch.abs(self.generate(x[clean], real[clean]).final - x[clean]))
        return terms

    def weights(self) -> dict[str, float]:
        cfg = self.cfg
        return {
            "adv": 1.0,
            "cond": cfg.lambda_cond,
            "cyc": cfg.lambda_cyc,
            "mask": cfg.lambda_mask,
            "smooth": cfg.lambda_mask_smooth,
            "idt": cfg.lambda_idt,
        }

    def generator_step(
        self, x: torch.Tensor, real: torch.Tensor, target: torch.Tensor, out: GeneratorOutput
    ) -> dict[str, float]:
        self.D.requires_grad_(False)
        terms = self.generator_losses(x, real, target, out)
        weights = self.weights()
        total = sum(weights[k] * v for k, v in terms.items())
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        return {**{f"g_{k}": v.item() for k, v in terms.items()}, "g_total": total.item()}

    # ------------------------------------------------------------------------------ checkpoints
    def parts(self) -> dict[str, Any]:
        return {"G": self.G, "D": self.D, "opt_g": self.opt_g, "opt_d": self.opt_d}

    @torch.no_grad()
    def test_condition(self, x: torch.Tensor) -> torch.Tensor:
        """Flag 0 (clean) with the attributes the critic's condition head reads off the input ``x`` ([-1, 1])."""
        estimate = self.D(x).attr
        attrs = estimate[:, 1:].clamp(0, 1)
        return torch.cat([torch.zeros_like(estimate[:, :1]), attrs], 1)

    @torch.no_grad()
    def restore(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Restoration:
        """Mask-free: ``masks`` is ignored. Returns G(x, (0, estimated attributes)) and the mask 1 - A."""
        self.G.eval()
        self.D.eval()
        x = to_pm1(images.to(self.ctx.device))
        out = self.generate(x, self.test_condition(x))
        return Restoration(to_01(out.final).clamp(0, 1).to(images.device), (1 - out.keep).to(images.device))

    def info(self) -> dict[str, Any]:
        return {"condition": ["occluded", *self.attributes]}
