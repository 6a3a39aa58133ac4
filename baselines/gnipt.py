"""GnIpt: Yu, Lin, Yang, Shen, Lu, Huang (CVPR 2018), "Generative image inpainting with contextual attention".

DeepFill v1 (JiahuiYu/generative_inpainting, tag v1.0.0; facts in docs/methods.md section 6): a coarse network
of plain ELU convolutions with dilated convs (rates 2, 4, 8, 16), then a refinement network with a dilated
branch and a contextual-attention branch, trained with a spatially discounted L1 on the hole, an "ae" L1 on
the valid region, and local + global WGAN-GP critics (5 critic steps per generator step).

Deviations, all options:
- v1 trains rectangular holes shared by the batch; our occluders are arbitrary shapes, one per sample: the
  local critic sees each mask's bounding box resized to ``patch_size`` (image_size // 2, as the official
  hole is half the image), the attention mask is per sample, and the spatial discount uses each hole
  pixel's chessboard distance l to the nearest known pixel, weight gamma^(l-1) (the official box formula
  gives the same on a box);
- the hole L1 is normalised by the hole's pixel count (the official mean over the hole patch);
- widths scale with ``width`` (cnum, 32 official) and ``d_width`` (64 official);
- the quick (CPU) profile takes ``d_steps`` = 1 critic step per generator step and batch 4; the paper
  profile the official 5 and 16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.gfc import crop_boxes, mask_boxes
from bench.method import Method, MethodContext, Restoration, paste, require_hole
from bench.nn.losses import gradient_penalty
from bench.options import Options, option


def gen_conv(cin: int, cout: int, k: int = 3, stride: int = 1, rate: int = 1, act: nn.Module | None = None):
    """v1 ``gen_conv``: 'SAME' conv (dilated when rate > 1) + ELU; ``act=nn.Identity()`` for the output."""
    conv = nn.Conv2d(cin, cout, k, stride, padding=rate * (k - 1) // 2, dilation=rate)
    return nn.Sequential(conv, nn.ELU(inplace=True) if act is None else act)


def gen_deconv(cin: int, cout: int) -> nn.Sequential:
    """v1 ``gen_deconv``: nearest x2 upsampling then a 3x3 conv."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), gen_conv(cin, cout))


def dilated_stack(c: int) -> list[nn.Module]:
    return [gen_conv(c, c, rate=r) for r in (2, 4, 8, 16)]


def decoder(cin: int, c: int) -> nn.Sequential:
    """conv11..conv17 of both stages: 4c, 4c, up 2c, 2c, up c, c/2, 3 (no activation)."""
    return nn.Sequential(
        gen_conv(cin, 4 * c),
        gen_conv(4 * c, 4 * c),
        gen_deconv(4 * c, 2 * c),
        gen_conv(2 * c, 2 * c),
        gen_deconv(2 * c, c),
        gen_conv(c, c // 2),
        gen_conv(c // 2, 3, act=nn.Identity()),
    )


class ContextualAttention(nn.Module):
    """Contextual attention (v1 ``contextual_attention``): fill foreground ``f`` from background ``b`` patches.

    Matching runs on ``f`` and ``b`` downsampled by ``rate``: ``ksize`` patches of ``b`` whose mask window
    holds no hole pixel are the candidates; the score is the convolution of ``f`` with the L2-normalised
    patch (cosine up to ``|f|``), summed along diagonals by an identity ``fuse_k`` kernel (first along x,
    then along y, so neighbours that agree on a shift reinforce it), then a masked softmax with
    ``softmax_scale``. Reconstruction pastes ``2*rate`` raw patches of full-resolution ``b`` with a
    transposed convolution of stride ``rate`` (divided by the 4 overlapping patches).
    As in v1, masked candidates get a score of 0 before the softmax and a weight of 0 after it.
    """

    def __init__(self, ksize: int = 3, stride: int = 1, rate: int = 2, fuse_k: int = 3, softmax_scale: float = 10.0):
        super().__init__()
        if rate < 2 or rate % 2:
            raise ValueError(f"contextual attention needs an even rate >= 2 (v1 uses 2), got {rate}")
        self.ksize, self.stride, self.rate, self.fuse_k, self.scale = ksize, stride, rate, fuse_k, softmax_scale

    def forward(self, f: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """f, b: [B,C,H,W] (H, W divisible by rate); mask: [B,1,H,W], 1 = hole. Returns [B,C,H,W]."""
        r, k, s = self.rate, self.ksize, self.stride
        raw_k = 2 * r
        f_s = F.interpolate(f, scale_factor=1 / r, mode="nearest")
        b_s = F.interpolate(b, size=f_s.shape[-2:], mode="nearest")
        m_s = F.interpolate(mask, size=f_s.shape[-2:], mode="nearest")
        hf, wf = f_s.shape[-2:]
        hb, wb = (hf - 1) // s + 1, (wf - 1) // s + 1
        channels = b.shape[1]
        out = []
        for fi, bi, bsi, mi in zip(f_s, b, b_s, m_s, strict=True):
            raw_w = F.unfold(bi[None], raw_k, stride=r * s, padding=r // 2)  # [1, C*raw_k^2, L]
            raw_w = raw_w[0].T.reshape(-1, channels, raw_k, raw_k)
            w = F.unfold(bsi[None], k, stride=s, padding=k // 2)[0].T  # [L, C*k*k]
            known = (F.unfold(mi[None], k, stride=s, padding=k // 2)[0].mean(0) == 0).float()  # [L]
            w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-4)
            score = F.conv2d(fi[None], w.reshape(-1, channels, k, k), padding=k // 2)  # [1, L, hf, wf]
            score = score[0].reshape(hb * wb, hf * wf).T  # [fg, bg]
            if self.fuse_k > 1:
                score = self._fuse(score, hf, wf, hb, wb)
            score = score * known
            attn = torch.softmax(score * self.scale, dim=1) * known
            attn = attn.T.reshape(1, hb * wb, hf, wf)
            out.append(F.conv_transpose2d(attn, raw_w, stride=r, padding=r // 2) / 4.0)
        return torch.cat(out)

    def _fuse(self, score: torch.Tensor, hf: int, wf: int, hb: int, wb: int) -> torch.Tensor:
        """Sum scores along the (fg, bg) diagonal in row-major order, then again in column-major order."""
        eye = torch.eye(self.fuse_k, device=score.device, dtype=score.dtype)[None, None]
        pad = self.fuse_k // 2
        score = F.conv2d(score[None, None], eye, padding=pad)[0, 0]
        score = score.reshape(hf, wf, hb, wb).permute(1, 0, 3, 2).reshape(wf * hf, wb * hb)
        score = F.conv2d(score[None, None], eye, padding=pad)[0, 0]
        return score.reshape(wf, hf, wb, hb).permute(1, 0, 3, 2).reshape(hf * wf, hb * wb)


class GnIptGenerator(nn.Module):
    """v1 ``build_inpaint_net``: coarse net, then the refinement net's dilated and attention branches."""

    def __init__(self, width: int = 32, attention: ContextualAttention | None = None) -> None:
        super().__init__()
        c = width
        self.coarse = nn.Sequential(
            gen_conv(5, c, 5),
            gen_conv(c, 2 * c, 3, 2),
            gen_conv(2 * c, 2 * c),
            gen_conv(2 * c, 4 * c, 3, 2),
            gen_conv(4 * c, 4 * c),
            gen_conv(4 * c, 4 * c),
            *dilated_stack(4 * c),
            decoder(4 * c, c),
        )
        self.refine_dilated = nn.Sequential(
            gen_conv(5, c, 5),
            gen_conv(c, c, 3, 2),
            gen_conv(c, 2 * c),
            gen_conv(2 * c, 2 * c, 3, 2),
            gen_conv(2 * c, 4 * c),
            gen_conv(4 * c, 4 * c),
            *dilated_stack(4 * c),
        )
        self.refine_attention_in = nn.Sequential(
            gen_conv(5, c, 5),
            gen_conv(c, c, 3, 2),
            gen_conv(c, 2 * c),
            gen_conv(2 * c, 4 * c, 3, 2),
            gen_conv(4 * c, 4 * c),
            gen_conv(4 * c, 4 * c, act=nn.ReLU(inplace=True)),
        )
        self.attention = attention or ContextualAttention()
        self.refine_attention_out = nn.Sequential(gen_conv(4 * c, 4 * c), gen_conv(4 * c, 4 * c))
        self.refine_decoder = decoder(8 * c, c)
        for m in self.modules():  # TF's default conv initialiser
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, hole: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [-1,1] image with the hole zeroed; hole: [B,1,H,W], 1 = hole. Returns (coarse, refined)."""
        ones = torch.ones_like(hole)
        x1 = self.coarse(torch.cat([x, ones, ones * hole], 1)).clamp(-1, 1)
        xnow = torch.cat([x1 * hole + x * (1 - hole), ones, ones * hole], 1)
        hallu = self.refine_dilated(xnow)
        feats = self.refine_attention_in(xnow)
        hole_s = F.interpolate(hole, size=feats.shape[-2:], mode="nearest")
        attended = self.refine_attention_out(self.attention(feats, feats, hole_s))
        x2 = self.refine_decoder(torch.cat([hallu, attended], 1)).clamp(-1, 1)
        return x1, x2


class WGANCritic(nn.Module):
    """v1 local/global critic: 5x5 stride-2 'SAME' convs with LeakyReLU 0.2, flatten, dense -> 1."""

    def __init__(self, in_size: int, widths: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for cout in widths:
            layers += [nn.Conv2d(cin, cout, 5, 2, padding=2), nn.LeakyReLU(0.2, True)]
            cin = cout
        side = in_size // 2 ** len(widths)
        if side < 1:
            raise ValueError(f"critic input {in_size} px is too small for {len(widths)} stride-2 convs")
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.fc = nn.Linear(cin * side * side, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def spatial_discount(hole: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma^(l-1) on hole pixels, l = chessboard distance to the nearest known pixel; 0 elsewhere."""
    known = 1 - hole
    distance = torch.zeros_like(hole)
    for step in range(1, max(hole.shape[-2:]) + 1):
        grown = F.max_pool2d(known, 3, stride=1, padding=1)
        distance = distance + (grown - known) * step
        known = grown
        if bool(known.min() > 0):
            break
    return torch.where(hole > 0.5, gamma ** (distance - 1).clamp_min(0), torch.zeros_like(hole))


@dataclass(frozen=True)
class GnIptOptions(Options):
    """GnIpt's options. Defaults = DeepFill v1's inpaint.yml (paper profile); ``quick`` = CPU widths and batch."""

    width: int = option(32, "generator base channels (cnum; official 32)", min=2)
    d_width: int = option(64, "critic base channels (official 64)", min=1)
    patch_size: int | None = option(
        None, "side of the local critic's input, the resized hole box (None = image_size // 2)", min=16
    )
    batch_size: int = option(16, "training batch size (official 16)", min=1)
    d_steps: int = option(5, "critic steps per generator step (official 5; 0 = critics frozen)", min=0)
    lr: float = option(1e-4, "Adam learning rate of generator and critics", min=0.0)
    beta1: float = option(0.5, "Adam beta1", min=0.0, below=1.0)
    beta2: float = option(0.9, "Adam beta2", min=0.0, below=1.0)
    spatial_discount_gamma: float = option(
        0.9, "hole L1 weight gamma^(l-1) at distance l from the known pixels", min=0.0, max=1.0
    )
    wgan_gp_lambda: float = option(10.0, "WGAN-GP gradient-penalty weight", min=0.0)
    l1_loss_alpha: float = option(1.2, "weight of the discounted hole L1", min=0.0)
    coarse_l1_alpha: float = option(1.2, "weight of the coarse output inside both L1 terms", min=0.0)
    ae_loss_alpha: float = option(1.2, "weight of the valid-region (ae) L1", min=0.0)
    gan_loss_alpha: float = option(0.001, "weight of the generator's WGAN term", min=0.0)
    global_wgan_loss_alpha: float = option(1.0, "global critic's share of the generator's WGAN term", min=0.0)
    attention_ksize: int = option(3, "contextual attention matching patch size (odd)", min=1)
    attention_rate: int = option(2, "contextual attention downsampling rate (even)", min=2)
    attention_fuse_k: int = option(3, "contextual attention fusion kernel (odd; 1 = no fusion)", min=1)
    attention_softmax_scale: float = option(10.0, "contextual attention softmax scale", min=0.0)

    profiles = {  # d_steps 1 fits a CPU budget
        "quick": {"width": 8, "d_width": 16, "batch_size": 4, "d_steps": 1},
        "standard": {"width": 16, "d_width": 32, "batch_size": 8},
    }


class GnIptMethod(Method):
    """Trains on paired batches with the true masks; restores with the given mask."""

    Options = GnIptOptions
    # quick and standard: minutes on a 2-core CPU (docs/methods.md section 14)
    default_steps = {"quick": 160, "standard": 1_800, "paper": 100_000}

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.cfg: GnIptOptions = ctx.config
        o, size = self.cfg, ctx.image_size
        if size % 16:
            raise ValueError(f"GnIpt needs an image size divisible by 16, got {size}")
        for key in ("attention_ksize", "attention_fuse_k"):
            if getattr(o, key) % 2 == 0:
                raise ValueError(f"gnipt: option {key} must be odd (a centred window), got {getattr(o, key)}")
        if o.attention_rate % 2:
            raise ValueError(f"gnipt: option attention_rate must be even, got {o.attention_rate}")
        self.patch_size = o.patch_size if o.patch_size is not None else size // 2
        attention = ContextualAttention(
            ksize=o.attention_ksize,
            rate=o.attention_rate,
            fuse_k=o.attention_fuse_k,
            softmax_scale=o.attention_softmax_scale,
        )
        d = o.d_width
        self.G = GnIptGenerator(o.width, attention).to(ctx.device)
        self.D_local = WGANCritic(self.patch_size, [d, 2 * d, 4 * d, 8 * d]).to(ctx.device)
        self.D_global = WGANCritic(size, [d, 2 * d, 4 * d, 4 * d]).to(ctx.device)
        self.opt_g: torch.optim.Adam | None = None
        self.opt_d: torch.optim.Adam | None = None
        self.data = None

    def weights(self) -> dict[str, float]:
        """v1's loss weights (``inpaint.yml``'s ``*_alpha``)."""
        o = self.cfg
        return {
            "l1": o.l1_loss_alpha,
            "coarse_l1": o.coarse_l1_alpha,
            "ae": o.ae_loss_alpha,
            "gan": o.gan_loss_alpha,
            "global_wgan": o.global_wgan_loss_alpha,
        }

    def setup_training(self, data) -> None:
        cfg = self.cfg
        self.data = data
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=betas)
        d_params = list(self.D_local.parameters()) + list(self.D_global.parameters())
        self.opt_d = torch.optim.Adam(d_params, lr=cfg.lr, betas=betas)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input in [-1,1] with the hole zeroed, ground truth in [-1,1], binary hole)."""
        batch = self.data.paired(self.cfg.batch_size)
        device = self.ctx.device
        hole = (batch.mask.to(device) > 0.5).float()
        return (batch.occluded.to(device) * 2 - 1) * (1 - hole), batch.clean.to(device) * 2 - 1, hole

    def _critics(self, images: torch.Tensor, boxes) -> tuple[torch.Tensor, torch.Tensor]:
        return self.D_local(crop_boxes(images, boxes, self.patch_size)), self.D_global(images)

    def _d_step(self) -> float:
        x, gt, hole = self._batch()
        with torch.no_grad():
            comp = self.G(x, hole)[1] * hole + x * (1 - hole)
        boxes = mask_boxes(hole)
        real_l, real_g = self._critics(gt, boxes)
        fake_l, fake_g = self._critics(comp, boxes)
        wgan = fake_l.mean() - real_l.mean() + fake_g.mean() - real_g.mean()
        crop = [crop_boxes(t, boxes, self.patch_size) for t in (gt, comp, hole)]
        gp = gradient_penalty(self.D_local, *crop) + gradient_penalty(self.D_global, gt, comp, hole)
        loss = wgan + self.cfg.wgan_gp_lambda * gp
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return float(loss.detach())

    def g_losses(self, x: torch.Tensor, gt: torch.Tensor, hole: torch.Tensor) -> dict[str, torch.Tensor]:
        """v1 ``build_graph_with_losses``: discounted hole L1, valid-region ae L1, and the critics' scores."""
        x1, x2 = self.G(x, hole)
        w = self.weights()
        discount = spatial_discount(hole, self.cfg.spatial_discount_gamma)
        count = 3 * hole.sum().clamp_min(1)
        hole_l1 = [(torch.abs(gt - y) * discount).sum() / count for y in (x1, x2)]
        valid = 1 - hole
        ae = [torch.mean(torch.abs(gt - y) * valid) for y in (x1, x2)]
        comp = x2 * hole + x * valid
        fake_l, fake_g = self._critics(comp, mask_boxes(hole))
        return {
            "l1": w["coarse_l1"] * hole_l1[0] + hole_l1[1],
            "ae": (w["coarse_l1"] * ae[0] + ae[1]) / valid.mean().clamp_min(1e-6),
            "g_wgan": -(w["global_wgan"] * fake_g.mean() + fake_l.mean()),
        }

    def train_step(self, step: int) -> dict[str, float]:
        self.G.train()
        d_steps = self.cfg.d_steps
        d_loss = sum(self._d_step() for _ in range(d_steps)) / max(d_steps, 1)
        terms = self.g_losses(*self._batch())
        w = self.weights()
        loss = w["gan"] * terms["g_wgan"] + w["l1"] * terms["l1"] + w["ae"] * terms["ae"]
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return {"loss": float(loss.detach()), "d_loss": d_loss, **{k: float(v.detach()) for k, v in terms.items()}}

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
        images, hole = images.to(device), require_hole("gnipt", masks, device)
        pred = (self.G((images * 2 - 1) * (1 - hole), hole)[1] + 1) / 2
        return paste(pred, images, hole)

    def info(self) -> dict[str, Any]:
        return {
            "width": self.cfg.width,
            "d_width": self.cfg.d_width,
            "patch_size": self.patch_size,
            "d_steps": self.cfg.d_steps,
            "local_critic": "mask bounding box",
        }
