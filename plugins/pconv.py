"""Registers ``pconv``: partial-convolution U-Net inpainting (Liu et al. 2018), fed the mask."""

from bench import hookimpl
from bench.method import MethodSpec


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="pconv",
            factory="baselines.pconv:PConvMethod",
            summary="partial-convolution U-Net inpainting of the masked region (needs a mask)",
            paper="Liu et al., ECCV 2018",
            needs_mask=True,
            trains_on=("paired",),
            reported={"psnr": 22.18, "ssim": 0.768},
        )
    )
