"""Registers the two learning-free reference methods: ``identity`` and ``telea``."""

from bench import hookimpl
from bench.method import MethodSpec


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="identity",
            factory="baselines.classical:IdentityMethod",
            summary="returns the occluded input unchanged (the floor every method must beat)",
            reference=True,
        )
    )
    register(
        MethodSpec(
            name="telea",
            factory="baselines.classical:TeleaMethod",
            summary="OpenCV fast-marching inpainting (INPAINT_TELEA) of the masked pixels",
            paper="Telea, J. Graphics Tools 2004",
            needs_mask=True,
        )
    )
