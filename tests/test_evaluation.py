"""The evaluator's seeded restore: a stochastic method repeats exactly and leaves the caller's random state alone."""

import torch

from bench.evaluation import batch_seed, seeded_restore
from bench.method import Restoration


class NoiseFill:
    """A stochastic restore (a noise fill, as GnIpt's or Yeh et al.'s latents draw)."""

    def restore(self, images, masks=None):
        return Restoration(torch.rand_like(images), None)


def test_same_seed_same_output_and_global_state_untouched():
    x, cpu = torch.zeros(2, 3, 8, 8), torch.device("cpu")
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = seeded_restore(NoiseFill(), x, None, cpu, batch_seed(0, "noise", "test_paired", 0)).images
    again = seeded_restore(NoiseFill(), x, None, cpu, batch_seed(0, "noise", "test_paired", 0)).images
    other = seeded_restore(NoiseFill(), x, None, cpu, batch_seed(0, "noise", "test_paired", 1)).images
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(first, again) and not torch.equal(first, other)
    torch.manual_seed(batch_seed(0, "noise", "test_paired", 0))  # the seed is torch's own: the same draw
    assert torch.equal(first, torch.rand_like(x))
