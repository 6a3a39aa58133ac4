"""LPIPS (Zhang et al. 2018) per image: torchmetrics' implementation, the backbone from a local file.

torchmetrics (like the ``lpips`` package) ships only LPIPS's linear heads; its backbone comes from torchvision's
download. Here the backbone is the user's torchvision-format state dict (``features.<i>.weight``/``bias``; timm's
VGG-16 has the same keys), the network is built on the meta device (torchvision's VGG-16 would spend ~4 s
initialising a classifier LPIPS never uses) and every tensor is then assigned from the two files, so nothing
random is ever left in it. A file that does not fit is refused with what is missing or misshapen.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

NETS = {  # measure (column) name -> (torchmetrics net, backbone name in messages)
    "lpips": ("vgg", "VGG-16"),
    "lpips_alex": ("alex", "AlexNet"),
}


def heads_path(net: str) -> Path:
    """The linear heads torchmetrics ships (identical bytes to the ``lpips`` package's ``weights/v0.1``)."""
    import torchmetrics.functional.image.lpips as tm

    return Path(tm.__file__).with_name("lpips_models") / f"{net}.pth"


def load_state(path: Path, mmap: bool = False) -> dict[str, Any]:
    """A weights-only state dict from a torch or safetensors file, on the CPU; ``mmap`` maps a zip-format file
    instead of reading it (what a check of keys and shapes needs)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import zipfile

    import torch

    mmap = mmap and zipfile.is_zipfile(path)  # torch.save's format; a legacy pickle cannot be mapped
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


def _meta_model(net: str):
    import torch
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    with torch.device("meta"):
        return _NoTrainLpips(pretrained=False, net=net, pnet_rand=True, use_dropout=True)


def backbone_problem(state: dict[str, Any], net: str) -> str | None:
    """Why ``state`` is not the backbone LPIPS-``net`` reads (missing keys, other shapes), or None."""
    wanted = {k: v.shape for k, v in _meta_model(net).net.state_dict().items()}
    missing, shaped = [], []
    for key, shape in wanted.items():
        source = _source_key(key)
        if source not in state:
            missing.append(source)
        elif tuple(state[source].shape) != tuple(shape):
            shaped.append(f"{source} {list(state[source].shape)} where {list(shape)} is expected")
    if missing:
        return f"missing {len(missing)} of {len(wanted)} backbone keys ({', '.join(missing[:2])}, ...)"
    if shaped:
        return f"{len(shaped)} of another shape, e.g. {shaped[0]}"
    return None


def _source_key(key: str) -> str:
    """torchmetrics' ``slice<k>.<i>.weight`` is torchvision's ``features.<i>.weight``."""
    return re.sub(r"^slice\d+\.", "features.", key)


class LPIPS:
    """One LPIPS variant on ``device``: :meth:`scores` gives one value per image pair (uint8 RGB, any size
    the backbone takes), lower is more similar."""

    def __init__(self, name: str, weights: Path, device: Any = "cpu") -> None:
        import torch
        from torchmetrics.functional.image.lpips import ScalingLayer

        self.name = name
        net, self.backbone = NETS[name]
        state = load_state(weights)
        problem = backbone_problem(state, net)
        if problem:
            raise ValueError(f"{weights}: does not fit {self.backbone} for LPIPS: {problem}")
        model = _meta_model(net)
        full = {f"net.{k}": state[_source_key(k)].float() for k in model.net.state_dict()}
        heads = torch.load(heads_path(net), map_location="cpu", weights_only=True)  # lin<k>.model.1.weight
        full.update(heads)
        full.update({k.replace("lin", "lins.", 1): v for k, v in heads.items()})  # the same modules, listed twice
        model.load_state_dict(full, strict=True, assign=True)
        model.scaling_layer = ScalingLayer()  # its constants are non-persistent buffers, not in any file
        self.model = model.to(device).eval()
        self.device = device

    def scores(self, pred: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.no_grad():
            p, t = (torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in (pred, target))
            p, t = (x.permute(0, 3, 1, 2).float() / 255.0 for x in (p, t))
            out = self.model(p, t, normalize=True)  # [0,1] -> [-1,1] inside, as LPIPS expects
        return {self.name: out.flatten().double().cpu().numpy()}
