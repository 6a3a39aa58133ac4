"""Registers ``yeh``: DCGAN latent-search inpainting (Yeh et al. CVPR 2017, OA-GAN ref. [25]). Torch-free."""

from bench import hookimpl
from bench.method import MethodSpec


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="yeh",
            factory="baselines.yeh:YehMethod",
            summary="DCGAN on clean faces; per image, z fitted to context + prior loss, G(z) fills the hole",
            paper="Yeh et al. CVPR 2017",
            needs_mask=True,
            trains_on=("clean",),
        )
    )
