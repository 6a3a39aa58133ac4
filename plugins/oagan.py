"""Registers OA-GAN and its ablation variants (paper Table IV, Figs. 4 and 15-16). Torch-free."""

from bench import hookimpl
from bench.method import MethodSpec

PAPER = "Cai et al., Semi-supervised natural face de-occlusion, IEEE TIFS 2021"
FACTORY = "oagan.method:OAGANMethod"
TRAINS_ON = ("paired", "natural", "clean")

# name suffix -> (summary, options, Table IV PSNR/SSIM where the paper reports one)
VARIANTS = {
    "no_perceptual": (
        "without the perceptual loss (lambda1 = 0)",
        {"lambda_perceptual": 0.0},
        (22.48, 0.784),
    ),
    "no_style": ("without the style loss (lambda2 = 0)", {"lambda_style": 0.0}, (21.91, 0.726)),
    "no_pixel": ("without the pixel loss (lambda3 = 0)", {"lambda_pixel": 0.0}, (21.74, 0.742)),
    "no_smooth": ("without the smoothness loss (lambda4 = 0)", {"lambda_smooth": 0.0}, (21.74, 0.760)),
    "no_l2": ("without the mask L2 penalty (lambda5 = 0)", {"lambda_mask": 0.0}, (22.55, 0.781)),
    "pretrain_finetune": (
        "two-stage training: paired batches for the first half, natural for the second",
        {"schedule": "pretrain_finetune"},
        None,
    ),
    "two_path": (
        "GANimation-style two-path generator (shared trunk, colour and mask heads; Fig. 4a)",
        {"generator": "two_path"},
        None,
    ),
}


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="oagan",
            factory=FACTORY,
            summary="occlusion-aware GAN: predicts the occlusion mask, completes the face; semi-supervised",
            paper=PAPER,
            predicts_mask=True,
            trains_on=TRAINS_ON,
            reported={"psnr": 22.61, "ssim": 0.787},
        )
    )
    for suffix, (summary, options, reported) in VARIANTS.items():
        register(
            MethodSpec(
                name=f"oagan:{suffix}",
                factory=FACTORY,
                summary=f"OA-GAN ablation: {summary}",
                paper=PAPER,
                predicts_mask=True,
                trains_on=TRAINS_ON,
                reported={"psnr": reported[0], "ssim": reported[1]} if reported else {},
                options=options,
            )
        )
