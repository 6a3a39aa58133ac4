"""OA-GAN (Cai et al., "Semi-supervised natural face de-occlusion", IEEE TIFS 2021).

``generator`` (Table I, and the two-path ablation), ``losses`` (Eqs. 3-9) and ``method`` (presets, alternating
schedule, training step). The critic of Table II is shared with GANimation: :class:`bench.nn.critic.LabelCritic`.
Imports torch.
"""
