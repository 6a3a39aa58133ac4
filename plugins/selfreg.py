"""Registers ``selfreg``: attention + transformation with self-regularisation (Yang et al. 2019); its mask is A."""

from bench import hookimpl
from bench.method import MethodSpec


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="selfreg",
            factory="baselines.selfreg:SelfRegMethod",
            summary="one attention/transformation generator, adversarial + perceptual self-regularisation, unpaired",
            paper="Yang et al., IEEE TIP 2019",
            predicts_mask=True,
            trains_on=("paired", "natural", "clean"),
        )
    )
