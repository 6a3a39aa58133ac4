"""Registers ArcFace (InsightFace's IResNet-50/100 from the user's ``backbone.pth``, given with ``--id-weights``)."""

from bench import hookimpl
from bench.identification.recognizer import RecognizerSpec

PAPER = "Deng et al., CVPR 2019 (ArcFace); InsightFace arcface_torch IResNet"


@hookimpl
def register_recognizers(register):
    register(
        RecognizerSpec(
            name="arcface",
            factory="baselines.arcface:ArcFaceRecognizer",
            summary="ArcFace IResNet-50/100 from InsightFace's backbone.pth (--id-weights; depth read from the file)",
            paper=PAPER,
            weights="required",
        )
    )
    for depth in (50, 100):
        register(
            RecognizerSpec(
                name=f"arcface_r{depth}",
                factory=f"baselines.arcface:ArcFace{depth}",
                summary=f"ArcFace IResNet-{depth} only: refuses a backbone.pth of another depth",
                paper=PAPER,
                weights="required",
            )
        )
