"""Registers LightCNN-9, the recognizer of the paper's Fig. 12 (weights from ``--id-weights`` or trained)."""

from bench import hookimpl
from bench.identification.recognizer import RecognizerSpec


@hookimpl
def register_recognizers(register):
    register(
        RecognizerSpec(
            name="lightcnn9",
            factory="baselines.lightcnn:LightCNNRecognizer",
            summary="LightCNN-9 (timm registry): the released checkpoint from --id-weights, else trained here",
            paper="Wu et al., IEEE TIFS 2018",
            weights="optional",
        )
    )
