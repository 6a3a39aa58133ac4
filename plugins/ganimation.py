"""Registers ``ganimation``: attention-based conditional translation (Pumarola et al. 2018); its mask is 1 - A."""

from bench import hookimpl
from bench.method import MethodSpec


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="ganimation",
            factory="baselines.ganimation:GANimationMethod",
            summary="two-path generator (colour + attention), WGAN-GP critic with condition regression, unpaired",
            paper="Pumarola et al., ECCV 2018",
            predicts_mask=True,
            trains_on=("paired", "natural", "clean"),
        )
    )
