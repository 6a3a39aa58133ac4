"""Registers ``gfc``: Generative Face Completion (Li et al. 2017), fed the mask."""

from bench import hookimpl
from bench.method import MethodSpec


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="gfc",
            factory="baselines.gfc:GFCMethod",
            summary="encoder-decoder with unpooling and fc bottleneck, local + global GAN (needs a mask)",
            paper="Li et al., CVPR 2017",
            needs_mask=True,
            trains_on=("paired",),
            reported={"psnr": 19.96, "ssim": 0.718},
        )
    )
