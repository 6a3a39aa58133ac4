"""Registers ``gnipt``: generative inpainting with contextual attention (Yu et al. 2018, v1), fed the mask."""

from bench import hookimpl
from bench.method import MethodSpec


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="gnipt",
            factory="baselines.gnipt:GnIptMethod",
            summary="coarse-to-fine inpainting with contextual attention, WGAN-GP critics (needs a mask)",
            paper="Yu et al., CVPR 2018",
            needs_mask=True,
            trains_on=("paired",),
            reported={"psnr": 20.13, "ssim": 0.725},
        )
    )
