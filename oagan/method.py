"""OA-GAN as a harness method: presets, the alternating paired/natural schedule (III-C) and one
WGAN-GP training step.

Each step updates the critic (real = clean faces, fake = the generator's output); every ``n_critic``
steps the generator is updated with Eq. (8) on a paired synthetic batch or Eq. (9) on a natural
batch. Which kind of batch a step gets is a deterministic function of (step, total_steps), so a
resumed run sees the same sequence.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from bench.data.types import OFFICIAL_ATTRIBUTES, PAPER_ATTRIBUTES, TrainData
from bench.method import Method, MethodContext, Restoration
from bench.nn.critic import LabelCritic
from bench.nn.losses import gradient_penalty
from bench.nn.schedules import linear_decay, set_lr
from bench.nn.two_path import GeneratorOutput, to_01, to_pm1
from bench.nn.vgg import VGGFeatures, find_vgg_weights
from bench.options import Options, option
from oagan import losses as L
from oagan.generator import build_generator

UNIT_INTERVAL = {"min": 0.0, "max": 1.0}


@dataclass(frozen=True)
class OAGANOptions(Options):
    """Every hyper-parameter of OA-GAN. Defaults = the ``paper`` preset (the paper's text); ``official`` =
    the authors' code where it differs (docs/methods.md section 1); ``quick`` = the CPU profile."""

    preset: str = option(
        "paper", "paper (the paper's text) or official (the authors' code)", choices=("paper", "official")
    )
    generator: str = option(
        "oagan", "two-stage generator (Table I) or the two-path one of Fig. 4a", choices=("oagan", "two_path")
    )
    width: int = option(64, "generator stem channels (Table I: 64)", min=1)
    d_width: int = option(64, "critic first-layer channels (Table II: 64)", min=1)
    res_blocks: int = option(3, "residual blocks of the occlusion-aware module (paper 3, official code 6)", min=0)
    batch_size: int = option(48, "training batch size (official code: 48)", min=1)
    lr: float = option(1e-4, "Adam learning rate of both networks (paper: 1e-4)", min=0.0)
    beta1: float = option(0.5, "Adam beta1 (official code; the paper gives only the lr)", min=0.0, below=1.0)
    beta2: float = option(0.999, "Adam beta2", min=0.0, below=1.0)
    lr_decay_start: float = option(
        1.0, "share of the steps after which lr decays linearly to 0 (1 = never)", **UNIT_INTERVAL
    )
    n_critic: int = option(1, "critic steps per generator step", min=1)
    lambda_perceptual: float = option(0.05, "lambda1, perceptual loss Eq. (4)")
    lambda_style: float = option(120.0, "lambda2, style loss Eq. (5)")
    lambda_pixel: float = option(1.0, "lambda3, pixel loss Eq. (6)")
    lambda_smooth: float = option(1e-3, "lambda4, smoothness loss Eq. (7)")
    lambda_mask: float = option(-1.0, "lambda5, weight of ||M||^2 (M = 1 keeps a pixel; negative rewards keeping)")
    # On a natural batch nothing else tells M where an occluder is (no mask, no ground truth; the WGAN term is all),
    # so a reward for keeping pixels teaches the mask head to keep natural occluders (README, natural occlusions).
    mask_on_natural: bool = option(True, "lambda5's ||M||^2 on natural batches too (Eq. 9); false: paired only")
    lambda_adv: float = option(1.0, "lambda6, WGAN generator term")
    gamma: float = option(6.0, "pixel weight inside the occlusion (PConv's hole weight, the paper's ref [13])", min=0.0)
    delta: float = option(1.0, "pixel weight outside the occlusion", min=0.0)
    lambda_gp: float = option(10.0, "WGAN-GP gradient-penalty weight", min=0.0)
    lambda_attr: float = option(1.0, "beta of Eq. (3), also on the generator's paired loss", min=0.0)
    attr_divide_by_batch: bool = option(False, "divide the attribute loss by the batch size (official code)")
    attr_on_natural: bool = option(False, "attribute loss on natural batches too (official; the paper: paired only)")
    smooth_reduction: str = option(
        "mean", "Eq. (7) as a mean (paper, with 1e-3) or a sum (official, with 1e-5)", choices=("mean", "sum")
    )
    # With the predicted split an occluder that M keeps costs only delta*|x-gt|, while lambda5*mean(M)^2 pays about
    # 2*mean(M) per kept pixel, so "keep everything" is a stable optimum; the true split charges gamma = 6x.
    # Without lambda_mask_sup the mask is learned only through x_final; no other loss compares M with the true mask.
    pixel_mask: str = option(
        "true",
        "hole region of Eq. (6): the true synthetic mask or the predicted 1-M (official)",
        choices=("true", "predicted"),
    )
    pixel_target: str = option(
        "final", "Eq. (6) on x_final (paper), x_synth (official) or both summed", choices=("final", "synth", "both")
    )
    gp_separate_step: bool = option(False, "a second Adam step on the gradient penalty alone (official)")
    gp_critic: str = option(
        "mean", "gradient penalty on the mean of the patch map or its sum (official)", choices=("mean", "sum")
    )
    vgg_input: str = option(
        "imagenet", "VGG input normalisation: imagenet, or pm1 (official feeds [-1,1] raw)", choices=("imagenet", "pm1")
    )
    vgg_weights: str = option("", "local VGG-16 weights file ('' = --weights-dir or BENCH_VGG16_WEIGHTS, else random)")
    schedule: str = option(
        "linear",
        "paired:natural schedule: linear ramp, fixed ratio, or pretrain_finetune",
        choices=("linear", "fixed", "pretrain_finetune"),
    )
    ratio_start: float = option(10.0, "paired:natural batches at the start", min=0.0)
    ratio_end: float = option(1.0, "paired:natural batches at the end of training", min=0.0)
    mask_threshold: float = option(0.5, "threshold binarising 1-M (reported; the harness binarises)", **UNIT_INTERVAL)
    # Eq. (8) has no such term and the official code never reads its masks, but the abstract trains on "paired
    # images with known masks"; the quick CPU profile turns it on (see ``profiles``).
    lambda_mask_sup: float = option(
        0.0, "BCE + Dice supervision of 1-M by the known synthetic mask (0 = paper)", min=0.0
    )
    paired_clean_share: float = option(
        0.0, "share of each paired batch shown un-occluded (mask all zeros)", **UNIT_INTERVAL
    )

    # The authors' code (docs/methods.md section 1) where it differs from the paper's text.
    presets = {
        "paper": {},
        "official": dict(
            res_blocks=6,
            lambda_smooth=1e-5,
            smooth_reduction="sum",
            lambda_attr=2000.0,
            attr_divide_by_batch=True,
            attr_on_natural=True,
            n_critic=5,
            vgg_input="pm1",
            pixel_mask="predicted",
            pixel_target="synth",
            gp_separate_step=True,
            gp_critic="sum",
            schedule="fixed",
            ratio_start=9.0,  # fake_real_rate=10: every 10th batch is natural
            lr_decay_start=100 / 110,
        ),
    }
    # quick, the CPU profile: a few hundred steps instead of ~25k, in which Eq. (8) alone does not learn the mask
    # head and lr 1e-3 under the N(0, 0.02) init with InstanceNorm stalls it (measured: docs/methods.md section 1).
    # So it supervises 1-M with the known synthetic masks (BCE + Dice, x15; x10 until the main job was cut to 240
    # steps for its 3-minute budget: x15 learns the mask in fewer steps, measured in docs/speed.md) and shows 1 face
    # in 8 un-occluded (mask all zeros: clean faces must stay whole); it weighs lambda5 (keep pixels) -10, not -1, so
    # that it still counts next to the supervision (x_synth is poor after 240 steps: every pixel it wrongly replaces
    # costs more than an occluder pixel left in place); it nearly drops the WGAN term (x0.01: early critic scores
    # swamp the rest); it applies Eq. (6) to x_final (the paper: charges M for leaking x_synth into visible pixels)
    # plus x_synth (the official code: a dense signal for the completion module); and it takes lr 3e-4 on batches of
    # 8, decaying linearly to 0 over the second half.
    # standard, the laptop profile: the quick recipe (with x10 supervision) for 1,200 steps, lambda5's keep reward on
    # paired batches only. On natural batches Eq. (9) has no term that locates an occluder, so with more steps the
    # keep reward teaches the mask head "no occlusion" on natural faces; without it the natural mask holds and natural
    # PSNR/SSIM rise above the input's (measured: docs/methods.md section 1, mask_on_natural).
    profiles = {
        "quick": dict(
            width=32,
            d_width=32,
            batch_size=8,
            lr=3e-4,
            lr_decay_start=0.5,
            lambda_adv=0.01,
            lambda_mask=-10.0,
            lambda_mask_sup=15.0,
            paired_clean_share=0.125,
            pixel_target="both",
        ),
        "standard": dict(mask_on_natural=False, lambda_mask_sup=10.0),  # as measured (docs/measurements.md)
    }


def natural_fraction(step: int, total: int, ratio_start: float, ratio_end: float) -> float:
    """Share of natural batches at ``step``: linear from 1/(1+ratio_start) to 1/(1+ratio_end)."""
    f0, f1 = 1 / (1 + ratio_start), 1 / (1 + ratio_end)
    if total <= 1:
        return f1
    return f0 + (f1 - f0) * min(step, total - 1) / (total - 1)


def _natural_count(steps: int, total: int, ratio_start: float, ratio_end: float) -> float:
    """Sum of natural_fraction over steps 0..steps-1 (closed form of the linear ramp)."""
    f0, f1 = 1 / (1 + ratio_start), 1 / (1 + ratio_end)
    if total <= 1:
        return f1 * steps
    ramp = min(steps, total)
    count = f0 * ramp + (f1 - f0) / (total - 1) * ramp * (ramp - 1) / 2
    return count + f1 * max(0, steps - total)


def is_natural_step(step: int, total: int, cfg: OAGANOptions) -> bool:
    """Whether ``step`` trains on a natural (unpaired) batch.

    ``linear``: the natural share grows linearly from 1:ratio_start to 1:ratio_end over ``total``
    steps; a natural batch is placed wherever the running sum of that share crosses an integer, so
    the first of every ~11 steps' worth is natural at the start and every other one at the end.
    ``fixed``: the share stays 1/(1+ratio_start). ``pretrain_finetune``: paired for the first half,
    natural for the second (the two-stage training the paper compares against).
    """
    if cfg.schedule == "pretrain_finetune":
        return step >= total // 2
    end = cfg.ratio_start if cfg.schedule == "fixed" else cfg.ratio_end
    eps = 1e-9
    before = _natural_count(step, total, cfg.ratio_start, end)
    after = _natural_count(step + 1, total, cfg.ratio_start, end)
    return math.floor(after + eps) > math.floor(before + eps)


def attribute_names(names: tuple[str, ...], preset: str) -> tuple[str, ...]:
    """The attributes the critic regresses: the paper's 10 or the official 7 where the data has them."""
    wanted = PAPER_ATTRIBUTES if preset == "paper" else OFFICIAL_ATTRIBUTES
    if all(n in names for n in wanted):
        return wanted
    if preset == "official" and names:
        warnings.warn("oagan: data lacks the official 7 CelebA attributes; using its first 7", stacklevel=2)
        return tuple(names[:7])
    return tuple(names)


class OAGANMethod(Method):
    """OA-GAN (Cai et al., TIFS 2021): predicts its own mask; mask crosses the API as 1 - M."""

    Options = OAGANOptions
    # paper: the official code's ~110 epochs of (natural images / 48) iterations on CelebA glasses, about 25k critic
    # steps; quick and standard: minutes on a 2-core CPU (docs/methods.md section 14)
    default_steps = {"quick": 240, "standard": 1_200, "paper": 25_000}

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.cfg: OAGANOptions = ctx.config
        self.total_steps = max(1, ctx.total_steps)
        self.attributes = attribute_names(tuple(ctx.attribute_names), self.cfg.preset)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            self.G = build_generator(self.cfg.generator, self.cfg.width, self.cfg.res_blocks).to(ctx.device)
            self.D = LabelCritic(ctx.image_size, self.cfg.d_width, len(self.attributes)).to(ctx.device)
        self.vgg: VGGFeatures | None = None
        self.opt_g: torch.optim.Adam | None = None
        self.opt_d: torch.optim.Adam | None = None
        self.data: TrainData | None = None
        self.attr_columns: list[int] = []

    # ----------------------------------------------------------------------------------- training
    def setup_training(self, data: TrainData) -> None:
        cfg = self.cfg
        missing = [a for a in self.attributes if a not in data.attribute_names]
        if missing:
            raise ValueError(f"oagan: training data lacks attributes {missing}")
        self.attr_columns = [data.attribute_names.index(a) for a in self.attributes]
        self.data = data
        if self.vgg is None and (cfg.lambda_perceptual or cfg.lambda_style):
            weights = find_vgg_weights(cfg.vgg_weights or None, self.ctx.weights_dir)
            self.vgg = VGGFeatures(weights, input_range=cfg.vgg_input).to(self.ctx.device)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=betas)

    def _attrs(self, attributes: torch.Tensor) -> torch.Tensor:
        return attributes[:, self.attr_columns].to(self.ctx.device)

    def train_step(self, step: int) -> dict[str, float]:
        if self.data is None or self.opt_g is None or self.opt_d is None:
            raise RuntimeError("oagan: call setup_training(data) before train_step")
        cfg, dev = self.cfg, self.ctx.device
        set_lr(linear_decay(step, self.total_steps, cfg.lr, cfg.lr_decay_start), self.opt_g, self.opt_d)
        self.G.train()
        paired = not is_natural_step(step, self.total_steps, cfg)
        gt = hole = None
        if paired:
            batch = self.data.paired(cfg.batch_size)
            x, attrs, hole = batch.occluded, batch.attributes, batch.mask
            n_clean = round(cfg.paired_clean_share * cfg.batch_size)
            if n_clean:
                x, hole = x.clone(), hole.clone()
                x[:n_clean], hole[:n_clean] = batch.clean[:n_clean], 0
            gt, hole = to_pm1(batch.clean.to(dev)), hole.to(dev)
        else:
            x, attrs = self.data.natural_batch(cfg.batch_size)
        real = self.data.clean_batch(cfg.batch_size)
        x = to_pm1(x.to(dev))
        update_g = step % cfg.n_critic == 0
        with torch.set_grad_enabled(update_g):
            out = self.G(x)
        losses = self._critic_step(to_pm1(real.images.to(dev)), self._attrs(real.attributes), out.final.detach())
        if update_g:
            losses.update(self._generator_step(out, gt, hole, self._attrs(attrs), paired))
        return losses

    def _critic_scores(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        adv, attr = self.D(images)
        return adv.mean(dim=(1, 2, 3)), attr

    def _critic_step(self, real: torch.Tensor, real_attrs: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        cfg, opt = self.cfg, self.opt_d
        self.D.requires_grad_(True)
        score_real, attr_real = self._critic_scores(real)
        score_fake, _ = self._critic_scores(fake)
        adv = L.critic_adv(score_real, score_fake)
        attr = L.attribute(attr_real, real_attrs, cfg.attr_divide_by_batch) if attr_real is not None else adv * 0
        loss = adv + cfg.lambda_attr * attr
        critic = self.D.critic if cfg.gp_critic == "mean" else (lambda z: self.D(z).adv)
        if cfg.gp_separate_step:  # official: step on the critic loss, then a separate step on the GP
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss = torch.zeros((), device=real.device)
        gp = gradient_penalty(critic, real, fake)
        opt.zero_grad(set_to_none=True)
        (loss + cfg.lambda_gp * gp).backward()
        opt.step()
        return {"d_adv": adv.item(), "d_attr": attr.item(), "d_gp": gp.item()}

    def _generator_step(
        self,
        out: GeneratorOutput,
        gt: torch.Tensor | None,
        hole: torch.Tensor | None,
        attrs: torch.Tensor,
        paired: bool,
    ) -> dict[str, float]:
        cfg = self.cfg
        self.D.requires_grad_(False)
        score, attr_pred = self._critic_scores(out.final)
        terms = {
            "adv": (cfg.lambda_adv, L.generator_adv(score)),
            "smooth": (cfg.lambda_smooth, L.smoothness(out.final, out.keep, cfg.smooth_reduction)),
            "mask": (cfg.lambda_mask if paired or cfg.mask_on_natural else 0.0, L.mask_l2(out.keep)),
        }
        if paired and cfg.lambda_mask_sup:
            terms["mask_sup"] = (cfg.lambda_mask_sup, L.mask_supervision(out.keep, hole))
        if paired:
            if self.vgg is not None:
                with torch.no_grad():  # the target's features need no backward pass: a third of VGG's cost
                    target = self.vgg(to_01(gt))
                feats = self.vgg(to_01(torch.cat([out.synth, out.final])))
                synth, final = zip(*(f.chunk(2) for f in feats), strict=True)
                terms["perceptual"] = (cfg.lambda_perceptual, L.perceptual(synth, final, target))
                terms["style"] = (cfg.lambda_style, L.style(synth, final, target))
            region = hole if cfg.pixel_mask == "true" else 1 - out.keep.detach()
            preds = {"final": [out.final], "synth": [out.synth], "both": [out.final, out.synth]}[cfg.pixel_target]
            terms["pixel"] = (cfg.lambda_pixel, sum(L.pixel(p, gt, region, cfg.gamma, cfg.delta) for p in preds))
        if attr_pred is not None and (paired or cfg.attr_on_natural):
            terms["attr"] = (cfg.lambda_attr, L.attribute(attr_pred, attrs, cfg.attr_divide_by_batch))
        total = sum(w * v for w, v in terms.values())
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        result = {f"g_{k}": v.item() for k, (_, v) in terms.items()}
        result["g_total"] = total.item()
        return result

    # ------------------------------------------------------------------------------ checkpoints
    def parts(self) -> dict[str, Any]:
        return {"G": self.G, "D": self.D, "opt_g": self.opt_g, "opt_d": self.opt_d}

    @torch.no_grad()
    def restore(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Restoration:
        """Mask-free: ``masks`` is ignored. Returns x_final and the soft occlusion mask 1 - M."""
        self.G.eval()
        out = self.G(to_pm1(images.to(self.ctx.device)))
        final = to_01(out.final).clamp(0, 1).to(images.device)
        return Restoration(final, (1 - out.keep).to(images.device))

    def info(self) -> dict[str, Any]:
        if self.vgg is not None:
            vgg = self.vgg.source
        else:
            weights = find_vgg_weights(self.cfg.vgg_weights or None, self.ctx.weights_dir)
            vgg = {"backbone": "timm:vgg16", "weights": str(weights) if weights else "random-init(seed=0)"}
        return {"attributes": list(self.attributes), "vgg": vgg}
