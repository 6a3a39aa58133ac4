"""LightCNN-9, the recognizer of the paper's Fig. 12 (docs/methods.md section 10).

LightCNN-9 (Wu et al., "A Light CNN for Deep Face Representation with Noisy Labels") is registered in
timm's model registry as ``lightcnn9`` so the released ``LightCNN_9Layers_checkpoint.pth.tar`` loads from
a local file with ``pretrained_cfg_overlay=dict(file=...)``; without weights the harness trains one
(:class:`LightCNNRecognizer`, the recognizer plugin ``lightcnn9`` registered by ``plugins/lightcnn.py``). A model
like the methods beside it: the harness (``bench.identification``) holds only the recognizer interface and the
protocol. timm is imported only when the registry is needed (importing it costs seconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.identification.recognizer import Recognizer, RecognizerContext, fit_problems

if TYPE_CHECKING:
    from bench.data.types import TrainData

__all__ = ["LightCNN9", "LightCNNRecognizer", "check_weights", "embed", "embedder", "lightcnn9", "register_timm"]

OFFICIAL_CLASSES = 79077  # MS-Celeb-1M identities of the released LightCNN-9
RELEASED_SIZE = 128  # its input side
LR_DECAY = 0.457305051927326  # official train.py: lr * LR_DECAY ** (epoch // 10) over 80 epochs
LR_DECAY_TIMES = 8
GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as PIL's convert("L") used by the official loader
default_cfgs: dict = {}  # filled by register_timm() (timm reads it when registering)


class MaxFeatureMap(nn.Module):
    """MFM: a conv (or linear) with twice the outputs whose halves compete by element-wise max."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        linear: bool = False,
    ) -> None:
        super().__init__()
        if linear:
            self.filter = nn.Linear(in_ch, 2 * out_ch)
        else:
            self.filter = nn.Conv2d(in_ch, 2 * out_ch, kernel_size, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.filter(x).chunk(2, dim=1)
        return torch.maximum(a, b)


class Group(nn.Module):
    """LightCNN's ``group``: MFM 1x1 (in -> in), then MFM kxk (in -> out)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.conv_a = MaxFeatureMap(in_ch, in_ch, 1, 1, 0)
        self.conv = MaxFeatureMap(in_ch, out_ch, kernel_size, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.conv_a(x))


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(2, 2, ceil_mode=True)


class LightCNN9(nn.Module):
    """``network_9layers``; module names match the official state dict (``features.N``, ``fc1``, ``fc2``).

    Input grayscale in [0,1] at ``img_size`` (128 for the released weights: fc1 is 8192 -> 256 there;
    the flattened size follows the image size). ``num_classes=0`` makes the 256-d feature the output.
    """

    def __init__(
        self,
        num_classes: int = OFFICIAL_CLASSES,
        in_chans: int = 1,
        img_size: int = 128,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_classes, self.img_size, self.drop_rate = num_classes, img_size, drop_rate
        self.num_features = 256
        self.features = nn.Sequential(
            MaxFeatureMap(in_chans, 48, 5, 1, 2),
            _pool(),
            Group(48, 96),
            _pool(),
            Group(96, 192),
            _pool(),
            Group(192, 128),
            Group(128, 128),
            _pool(),
        )
        side = -(-img_size // 16)  # four ceil-mode poolings
        self.fc1 = MaxFeatureMap(128 * side * side, self.num_features, linear=True)
        self.fc2 = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                # max of two N(0, s^2) keeps the second moment, so std 1/sqrt(fan_in) keeps the signal alive
                # through the nine layers (torch's default shrinks it ~sqrt(3)x per layer: no learning at first)
                nn.init.kaiming_normal_(module.weight, nonlinearity="linear")
                nn.init.zeros_(module.bias)

    def get_classifier(self) -> nn.Module:
        return self.fc2

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc2 = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = F.dropout(self.fc1(x.flatten(1)), self.drop_rate, self.training)
        return x if pre_logits else self.fc2(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict: Mapping, model: nn.Module | None = None) -> dict:
    """Unwrap the official layout, ``{'state_dict': {'module.' + key: tensor}, ...}`` (DataParallel)."""
    state_dict = state_dict.get("state_dict", state_dict)
    return {key.removeprefix("module."): value for key, value in state_dict.items()}


def lightcnn9(pretrained: bool = False, **kwargs) -> LightCNN9:
    """timm entry point (registered by :func:`register_timm`)."""
    from timm.models import build_model_with_cfg

    return build_model_with_cfg(LightCNN9, "lightcnn9", pretrained, pretrained_filter_fn=checkpoint_filter_fn, **kwargs)


def register_timm() -> None:
    """Put ``lightcnn9`` in timm's registry (idempotent). Its cfg has no url or hub id: weights only ever
    come from a local ``file`` given through ``pretrained_cfg_overlay``."""
    from timm.models import generate_default_cfgs, is_model, register_model

    if is_model("lightcnn9"):
        return
    default_cfgs.update(
        generate_default_cfgs(
            {
                "lightcnn9": dict(
                    input_size=(1, 128, 128),
                    mean=(0.0,),
                    std=(1.0,),
                    interpolation="bilinear",
                    crop_pct=1.0,
                    num_classes=OFFICIAL_CLASSES,
                    first_conv="features.0.filter",
                    classifier="fc2",
                    paper_ids="arXiv:1511.02683",
                )
            }
        )
    )
    register_model(lightcnn9)


def embedder(weights: str | Path, image_size: int = 128, device: str | torch.device = "cpu") -> LightCNN9:
    """A LightCNN-9 feature extractor in eval mode from a local weights file (official layout or a plain state
    dict), built through timm's registry; a file that does not fit is refused naming its keys or shapes."""
    import timm

    if not Path(weights).is_file():
        raise FileNotFoundError(f"{weights}: LightCNN-9 weights file not found")
    check_weights(weights, image_size)
    register_timm()
    model = timm.create_model(
        "lightcnn9", pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)), num_classes=0, img_size=image_size
    )
    return model.to(device).eval()


def check_weights(weights: str | Path, image_size: int = RELEASED_SIZE) -> None:
    """Refuse a weights file whose tensors do not fit LightCNN-9's feature layers at ``image_size``, naming the
    first keys missing, unexpected or of another shape (the classifier ``fc2`` is dropped: any class count fits).
    Built on the meta device, so the check allocates nothing."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    tensors = state.get("state_dict", state) if isinstance(state, Mapping) else None
    if not isinstance(tensors, Mapping) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise ValueError(f"{weights}: not a state dict of tensors (nor the official {{'state_dict': ...}} layout)")
    found = {k: v for k, v in checkpoint_filter_fn(state).items() if not k.startswith("fc2.")}
    with torch.device("meta"):
        wanted = LightCNN9(num_classes=0, img_size=image_size).state_dict()
    problems = fit_problems(found, wanted, f"LightCNN-9 at image_size={image_size}")
    if problems:
        raise ValueError(f"{weights}: does not fit LightCNN-9: " + "; ".join(problems))


def _param_groups(model: LightCNN9, lr: float) -> list[dict]:
    groups = []
    for name, param in model.named_parameters():
        head = name.startswith("fc2.")
        if name.endswith("bias"):
            groups.append({"params": [param], "lr": (20 if head else 2) * lr, "weight_decay": 0.0})
        else:
            groups.append({"params": [param], "lr": (10 if head else 1) * lr})
    return groups


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    pad = max(1, x.shape[-1] // 16)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    out = torch.empty_like(x)
    for i, (dy, dx) in enumerate(rng.integers(0, 2 * pad + 1, (len(x), 2))):
        out[i] = padded[i, :, dy : dy + x.shape[-2], dx : dx + x.shape[-1]]
    flip = torch.from_numpy(rng.random(len(x)) < 0.5)
    out[flip] = out[flip].flip(-1)
    return out


def to_gray(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 RGB [N,H,W,3] -> float32 grayscale [N,1,size,size] in [0,1] (LightCNN's input)."""
    rgb = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    gray = (rgb @ torch.tensor(GRAY))[:, None]
    if gray.shape[-1] != size or gray.shape[-2] != size:
        gray = F.interpolate(gray, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return gray.clamp_(0.0, 1.0)


@torch.no_grad()
def embed(model: LightCNN9, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """uint8 RGB faces [N,H,W,3] -> L2-normalised 256-d features [N,256] (float32)."""
    model.eval()
    device = next(model.parameters()).device
    chunks = [
        model.forward_head(model.forward_features(to_gray(images[i : i + batch_size], model.img_size).to(device)), True)
        for i in range(0, len(images), batch_size)
    ]
    feats = torch.cat(chunks) if chunks else torch.empty(0, model.num_features)
    return F.normalize(feats.float(), dim=1).cpu().numpy()


class LightCNNRecognizer(Recognizer):
    """LightCNN-9 behind the recognizer interface: the released checkpoint from ``--id-weights``, or trained by
    the harness loop and cached. Training is the official ``train.py``'s softmax identity classification: SGD
    with momentum, fc2 at 10x lr, biases at 2x (fc2: 20x) without weight decay, lr x0.457 at each eighth of
    training (every 10 of 80 epochs). Augmentation: horizontal flip and a shift of up to 1/16 of the side (their
    random 128 crop of 144 px faces)."""

    default_steps = {"quick": 600, "paper": 2000}
    batch_size, lr, momentum, weight_decay = 64, 0.01, 0.9, 1e-4

    def __init__(self, ctx: RecognizerContext) -> None:
        super().__init__(ctx)
        # The released network takes 128 px (fc1 8192 -> 256) at any benchmark size: ``embed`` resizes faces to it.
        self.model = embedder(ctx.weights, image_size=RELEASED_SIZE, device=ctx.device) if ctx.weights else None
        self.optimizer: torch.optim.SGD | None = None

    @classmethod
    def check_weights(cls, path: Path) -> None:
        check_weights(path, RELEASED_SIZE)

    @property
    def trainable(self) -> bool:
        return self.ctx.weights is None

    def describe(self) -> str:
        return f"LightCNN-9 from {self.ctx.weights}" if self.ctx.weights else "LightCNN-9 trained in the harness"

    def setup_training(self, data: TrainData) -> None:
        faces, ctx = data.clean, self.ctx
        self.faces, self.rng = faces, data.rng
        self.labels = torch.from_numpy(np.unique(faces.identities, return_inverse=True)[1].reshape(-1))
        torch.manual_seed(ctx.seed)
        self._build(int(self.labels.max()) + 1)
        self.optimizer = torch.optim.SGD(
            _param_groups(self.model, self.lr), self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )
        self.base_lr = [group["lr"] for group in self.optimizer.param_groups]
        self.model.train()

    def train_step(self, step: int) -> dict[str, float]:
        decay = LR_DECAY ** (step * LR_DECAY_TIMES // max(self.ctx.steps, 1))
        for group, group_lr in zip(self.optimizer.param_groups, self.base_lr, strict=True):
            group["lr"] = group_lr * decay
        index = self.rng.integers(0, len(self.faces), self.batch_size)
        x = _augment(to_gray(self.faces.images[index], self.model.img_size), self.rng).to(self.ctx.device)
        loss = F.cross_entropy(self.model(x), self.labels[index].to(self.ctx.device))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def parts(self) -> dict:
        return {"model": self.model, "optimizer": self.optimizer}

    def embed(self, images: np.ndarray) -> np.ndarray:
        return embed(self.model, images)

    def state_dict(self) -> dict:
        return {"num_classes": self.model.num_classes, **super().state_dict()}

    def load_state_dict(self, state: Mapping) -> None:
        if self.model is None:  # served from the cache: the class count comes with the weights
            self._build(int(state["num_classes"]))
        super().load_state_dict(state)

    def _build(self, num_classes: int) -> None:
        self.model = LightCNN9(num_classes=num_classes, img_size=self.ctx.image_size).to(self.ctx.device)
