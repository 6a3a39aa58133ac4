"""Registers ``csa``: coherent semantic attention inpainting (Liu et al. 2019), fed the mask."""

from bench import hookimpl
from bench.method import MethodSpec


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="csa",
            factory="baselines.csa:CSAMethod",
            summary="two-stage U-Net inpainting with a coherent semantic attention layer (needs a mask)",
            paper="Liu et al., ICCV 2019",
            needs_mask=True,
            trains_on=("paired",),
            reported={"psnr": 22.71, "ssim": 0.794},
        )
    )
