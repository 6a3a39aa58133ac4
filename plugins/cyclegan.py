"""Registers ``cyclegan``: unpaired translation occluded -> clean (Zhu et al. 2017), no mask."""

from bench import hookimpl
from bench.method import MethodSpec


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="cyclegan",
            factory="baselines.cyclegan:CycleGANMethod",
            summary="two ResNet generators and PatchGAN critics, LSGAN + cycle + identity losses, unpaired",
            paper="Zhu et al., ICCV 2017",
            trains_on=("paired", "natural", "clean"),
        )
    )
