"""OA-GAN: Table I/II shapes, each loss against a hand-computed value, the ratio schedule, training,
checkpoints and resume."""

import io
import math
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from bench.data.types import OFFICIAL_ATTRIBUTES, PAPER_ATTRIBUTES
from bench.nn.critic import LabelCritic
from bench.nn.two_path import TwoPathGenerator
from oagan import losses as L
from oagan.generator import OAGANGenerator
from oagan.method import OAGANMethod, OAGANOptions, is_natural_step, natural_fraction
from tests.util import check_bit_exact_resume

TINY = dict(width=8, d_width=8, batch_size=2)
NO_VGG = dict(TINY, lambda_perceptual=0, lambda_style=0)  # building VGG-16 costs seconds


def _shapes(model: torch.nn.Module, names: list[str], x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    modules = dict(model.named_modules())
    seen: dict[str, tuple[int, ...]] = {}

    def hook(name: str):
        def record(module, inputs, output) -> None:  # must return None: a returned value replaces the output
            seen[name] = tuple(output.shape[1:])

        return record

    hooks = [modules[n].register_forward_hook(hook(n)) for n in names]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def _conv_params(cin: int, cout: int, k: int, norm: bool = True, bias: bool = False) -> int:
    return cin * cout * k * k + (cout if bias else 0) + (2 * cout if norm else 0)


def test_generator_matches_table1_at_paper_size():
    g = OAGANGenerator(width=64, res_blocks=3)
    stages = {
        "occlusion_aware.trunk.encoder.0": (64, 128, 128),
        "occlusion_aware.trunk.encoder.2": (256, 32, 32),
        "occlusion_aware.trunk.residual": (256, 32, 32),
        "occlusion_aware.trunk.decoder": (64, 128, 128),  # intermediate face feature F
        "occlusion_aware.mask_head": (1, 128, 128),
        "completion.encoder": (512, 16, 16),
        "completion.decoder": (64, 128, 128),
        "completion.to_rgb": (3, 128, 128),
    }
    assert _shapes(g, list(stages), torch.rand(1, 3, 128, 128) * 2 - 1) == stages
    trunk = (
        _conv_params(3, 64, 7) + _conv_params(64, 128, 4) + _conv_params(128, 256, 4)
        + 3 * 2 * _conv_params(256, 256, 3)
        + _conv_params(256, 128, 4) + _conv_params(128, 64, 4)
    )  # fmt: skip
    completion = (
        _conv_params(64, 128, 4) + _conv_params(128, 256, 4) + _conv_params(256, 512, 4)
        + _conv_params(512, 256, 4) + _conv_params(256, 128, 4) + _conv_params(128, 64, 4)
        + _conv_params(64, 3, 7, norm=False)
    )  # fmt: skip
    mask = _conv_params(64, 1, 7, norm=False)
    assert sum(p.numel() for p in g.parameters()) == trunk + mask + completion == 10_383_680


def test_discriminator_matches_table2():
    d = LabelCritic(image_size=128, width=64, n_attributes=10)
    convs = [m for m in d.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1024, 2048]
    shapes = _shapes(d, ["features.1", "features", "adv_head", "attr_head"], torch.rand(1, 3, 128, 128))
    assert shapes == {
        "features.1": (64, 64, 64),
        "features": (2048, 2, 2),
        "adv_head": (1, 2, 2),
        "attr_head": (10, 1, 1),
    }
    layers = sum(_conv_params(c.in_channels, c.out_channels, 4, norm=False, bias=True) for c in convs)
    expected = layers + 2048 * 9 + 2048 * 10 * 4
    assert sum(p.numel() for p in d.parameters()) == expected == 44_803_008
    small = LabelCritic(image_size=64, width=32, n_attributes=7)
    out = small(torch.rand(2, 3, 64, 64))
    assert out.adv.shape == (2, 1, 2, 2) and out.attr.shape == (2, 7)
    assert small.critic(torch.rand(2, 3, 64, 64)).shape == (2,)


@pytest.mark.parametrize("cls", [OAGANGenerator, TwoPathGenerator])
def test_generator_output_composites_eq2(cls):
    g = cls(width=8, res_blocks=1)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = g(x)
    assert out.final.shape == out.synth.shape == x.shape and out.keep.shape == (2, 1, 32, 32)
    assert 0 <= out.keep.min() and out.keep.max() <= 1
    torch.testing.assert_close(out.final, out.keep * x + (1 - out.keep) * out.synth)


def test_losses_against_hand_computed_values():
    row = lambda *v: torch.tensor(v, dtype=torch.float32).view(1, 1, 1, -1)  # noqa: E731
    # pixel: |pred-gt| = [1, 3]; hole = [1, 0] -> 6 * (1+0)/2 + 1 * (0+3)/2
    assert L.pixel(row(1, 3), row(0, 0), row(1, 0), gamma=6, delta=1).item() == pytest.approx(4.5)
    # smoothness: TV of [[0,1],[2,4]]: dx = [1,2], dy = [2,3] (mask constant: 0)
    img = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).view(1, 1, 2, 2)
    assert L.smoothness(img, torch.ones_like(img), "mean").item() == pytest.approx(1.5 + 2.5)
    assert L.smoothness(img, torch.ones_like(img), "sum").item() == pytest.approx(3 + 5)
    assert L.smoothness(img, img, "sum").item() == pytest.approx(16)
    assert L.mask_l2(row(0, 1, 1, 0.5)).item() == pytest.approx(0.625**2)
    assert L.critic_adv(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 3.0])).item() == pytest.approx(1.0)
    assert L.generator_adv(torch.tensor([1.0, 3.0])).item() == pytest.approx(-2.0)
    # mask supervision: occlusion 1-M = [0.5, 0] vs hole [1, 0]: BCE = ln2/2; Dice = 1 - (2*0.5+1)/(0.5+1+1) = 0.2
    sup = L.mask_supervision(row(0.5, 1.0), row(1.0, 0.0)).item()
    assert sup == pytest.approx(math.log(2) / 2 + 0.2, abs=1e-5)
    pred = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert L.attribute(pred, torch.zeros(2, 2)).item() == pytest.approx(0.25)
    assert L.attribute(pred, torch.zeros(2, 2), divide_by_batch=True).item() == pytest.approx(0.125)
    # one "VGG layer" of shape [1,1,1,2]: perceptual = mean|[1,1]| + mean|[0,2]| = 2;
    # Gram = f.f / (C*H*W): synth 2/2 = 1, final 4/2 = 2, gt 0 -> style = 3
    synth, final, gt = [row(1, 1)], [row(0, 2)], [row(0, 0)]
    assert L.perceptual(synth, final, gt).item() == pytest.approx(2.0)
    assert L.style(synth, final, gt).item() == pytest.approx(3.0)


def test_ratio_schedule_ramps_from_10_to_1_to_1_to_1():
    cfg, total = OAGANOptions(), 1100
    natural = [is_natural_step(s, total, cfg) for s in range(total)]
    assert natural_fraction(0, total, 10, 1) == pytest.approx(1 / 11)
    assert natural_fraction(total - 1, total, 10, 1) == pytest.approx(1 / 2)
    assert sum(natural[:11]) == 1 and natural[10]
    assert abs(sum(natural[-100:]) - 50) <= 2
    assert abs(sum(natural) - total * (1 / 11 + 1 / 2) / 2) <= 1.5
    tail = [is_natural_step(s, total, cfg) for s in range(total, total + 20)]  # 1:1 past the ramp
    assert sum(tail) == 10
    fixed = replace(cfg, schedule="fixed", ratio_start=9)  # official: every 10th batch is natural
    assert [s for s in range(40) if is_natural_step(s, 40, fixed)] == [9, 19, 29, 39]
    two_stage = replace(cfg, schedule="pretrain_finetune")
    assert [is_natural_step(s, 10, two_stage) for s in range(10)] == [False] * 5 + [True] * 5


def test_presets_options_and_info(make_context):
    from bench.method import make_context as build
    from bench.options import OptionError

    def ctx(profile="quick", **options):
        return build(
            OAGANMethod,
            image_size=32,
            profile=profile,
            device=torch.device("cpu"),
            options=(options,),
            attribute_names=PAPER_ATTRIBUTES,
        )

    paper = OAGANMethod(ctx(width="8", d_width="8", lambda_style="0"))
    assert paper.cfg.res_blocks == 3 and paper.cfg.lambda_style == 0.0 and paper.cfg.width == 8
    assert paper.D.attr_head.out_channels == 10 and paper.attributes == PAPER_ATTRIBUTES
    official = OAGANMethod(ctx(preset="official", width=8, d_width=8))
    assert official.cfg.res_blocks == 6 and official.cfg.n_critic == 5 and official.cfg.smooth_reduction == "sum"
    assert official.attributes == OFFICIAL_ATTRIBUTES and official.D.attr_head.out_channels == 7
    assert official.cfg.preset == "official" and "weights" in official.info()["vgg"]
    # the quick profile sits above the preset, the user's values above both
    assert official.cfg.width == 8 and official.cfg.lr == 3e-4 and official.cfg.lambda_smooth == 1e-5
    with pytest.raises(OptionError, match="pixel_mask must be one of true, predicted"):
        make_context(OAGANMethod, 32, pixel_mask="oracle")
    with pytest.raises(OptionError, match=r"paired_clean_share=8.0 is out of range \[0.0, 1.0\]"):
        make_context(OAGANMethod, 32, paired_clean_share=8)
    with pytest.raises(OptionError, match="did you mean lambda_mask"):
        make_context(OAGANMethod, 32, lamda_mask=1)
    with pytest.raises(OptionError, match="preset must be one of paper, official"):
        make_context(OAGANMethod, 32, preset="authors")
    # the CPU profile adds mask supervision and a smaller critic term; the paper profile keeps Eq. (8) as written
    quick = OAGANMethod(ctx(width=8, d_width=8)).cfg
    assert quick.lambda_mask_sup == 15 and quick.lambda_adv == 0.01 and quick.pixel_target == "both"
    assert quick.paired_clean_share == 0.125 and quick.lr_decay_start == 0.5 and quick.lambda_mask == -10
    full = OAGANMethod(ctx("paper", width=8, d_width=8))
    assert full.cfg.lambda_mask_sup == 0 and full.cfg.lambda_adv == 1 and full.cfg.lr == 1e-4
    assert full.cfg.paired_clean_share == 0 and full.cfg.pixel_target == "final"


def test_plugin_registers_variants_without_torch():
    code = (
        "import sys, plugins.oagan as p; specs = []; p.register_methods(specs.append); "
        "assert 'torch' not in sys.modules; print(' '.join(s.name for s in specs))"
    )
    names = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert names[0] == "oagan" and {"oagan:no_style", "oagan:two_path", "oagan:pretrain_finetune"} <= set(names)


def _paired_loss(method: OAGANMethod, batch) -> float:
    """Eq. (6) on x_final for a fixed batch, with the true hole (gamma 6, delta 1)."""
    with torch.no_grad():
        out = method.G(batch.occluded * 2 - 1)
    return L.pixel(out.final, batch.clean * 2 - 1, batch.mask, 6, 1).item()


def test_training_steps_lower_the_paired_loss(make_context, make_train_data, fixed_paired):
    torch.manual_seed(0)
    data = fixed_paired(make_train_data(size=32, n=8), 4)
    # every step paired (pretrain half of a long schedule); no VGG (slow to build) and no critic term, so the
    # objective is the reconstruction of Eq. (8) on one fixed batch
    options = {**NO_VGG, "batch_size": 4, "lr": 1e-3, "lambda_adv": 0, "schedule": "pretrain_finetune"}
    method = OAGANMethod(make_context(OAGANMethod, 32, **options, total_steps=1000))
    method.setup_training(data)
    fixed = data.paired(4)
    before = _paired_loss(method, fixed)
    for step in range(6):
        losses = method.train_step(step)
    assert {"g_pixel", "g_smooth", "g_mask", "g_adv", "g_attr", "d_adv", "d_attr", "d_gp"} <= set(losses)
    assert _paired_loss(method, fixed) < 0.8 * before
    out = method.restore(fixed.occluded, None)
    assert out.images.shape == fixed.occluded.shape and out.masks.shape == fixed.mask.shape
    assert 0 <= out.images.min() and out.images.max() <= 1 and 0 <= out.masks.min() and out.masks.max() <= 1
    assert not method.G.training


def test_paired_clean_share_and_pixel_loss_on_both_outputs(make_context, make_train_data, fixed_paired, monkeypatch):
    data = fixed_paired(make_train_data(size=32, n=8), 4)
    batch = data.paired(4)
    options = {**NO_VGG, "batch_size": 4, "paired_clean_share": 0.5, "lambda_mask_sup": 1.0, "pixel_target": "both"}
    method = OAGANMethod(make_context(OAGANMethod, 32, **options))
    method.setup_training(data)
    seen = {}

    def record_generator(module, inputs, out) -> None:  # a returned value would replace the output
        seen["x"], seen["out"] = inputs[0].clone(), [t.detach() for t in out]

    method.G.register_forward_hook(record_generator)
    supervise = L.mask_supervision

    def recording(keep: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        seen["hole"] = hole.clone()
        return supervise(keep, hole)

    monkeypatch.setattr(L, "mask_supervision", recording)
    assert not is_natural_step(0, method.total_steps, method.cfg)
    losses = method.train_step(0)
    assert torch.equal(seen["x"][:2], batch.clean[:2] * 2 - 1)
    assert torch.equal(seen["x"][2:], batch.occluded[2:] * 2 - 1)
    assert seen["hole"][:2].sum() == 0 and torch.equal(seen["hole"][2:], batch.mask[2:])
    assert batch.mask[:2].sum() > 0  # the shared batch itself is left untouched
    final, synth, _ = seen["out"]  # pixel_target "both": Eq. (6) on x_final plus on x_synth
    expected = sum(L.pixel(p, batch.clean * 2 - 1, seen["hole"], 6, 1) for p in (final, synth))
    assert losses["g_pixel"] == pytest.approx(expected.item(), rel=1e-5)


def test_official_preset_and_two_path_steps_run(make_context, make_train_data):
    data = make_train_data(size=32, n=8)
    official = OAGANMethod(make_context(OAGANMethod, 32, **TINY, preset="official", res_blocks=1))
    official.setup_training(data)
    first, second = official.train_step(0), official.train_step(1)  # step 0: paired, with VGG losses
    assert {"g_perceptual", "g_style", "g_pixel", "g_total"} <= set(first)
    assert all(torch.isfinite(torch.tensor(v)) for v in first.values())
    assert "g_total" not in second and "d_gp" in second  # generator every 5 critic steps
    two_path = OAGANMethod(
        make_context(OAGANMethod, 32, **NO_VGG, generator="two_path", schedule="fixed", ratio_start=0)
    )
    two_path.setup_training(data)
    losses = two_path.train_step(0)  # ratio 0:1, i.e. a natural batch: Eq. (9) only
    assert {"g_adv", "g_smooth", "g_mask"} <= set(losses) and "g_pixel" not in losses and "g_attr" not in losses


def test_checkpoint_round_trip(make_context, make_train_data):
    data = make_train_data(size=32, n=8)
    a = OAGANMethod(make_context(OAGANMethod, 32, **NO_VGG))
    a.setup_training(data)
    for step in range(2):
        a.train_step(step)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    b = OAGANMethod(replace(make_context(OAGANMethod, 32, **NO_VGG), seed=1))
    b.setup_training(data)
    b.load_state_dict(state)
    x = data.paired(2).occluded
    ra, rb = a.restore(x, None), b.restore(x, None)
    assert torch.equal(ra.images, rb.images) and torch.equal(ra.masks, rb.masks)
    sa, sb = a.opt_g.state_dict()["state"], b.opt_g.state_dict()["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa)


def test_killed_and_resumed_training_is_bit_identical(make_context, make_train_data, tmp_path):
    """Paired and natural steps, critic and generator updates, the lr decay: a resume changes none of them."""
    options = {**NO_VGG, "lr_decay_start": 0.5, "schedule": "fixed", "ratio_start": 1.0}
    check_bit_exact_resume(OAGANMethod, options, 4, 2, tmp_path, make_context, lambda: make_train_data(size=32, n=8))


@pytest.mark.parametrize("paired", [True, False], ids=["paired", "natural"])
def test_mask_on_natural_drops_the_keep_reward_on_natural_batches_only(make_context, make_train_data, paired):
    """The same step from the same state: without lambda5 on natural batches the generator's total differs by
    exactly lambda5 * ||M||^2 on a natural batch and not at all on a paired one."""
    totals = {}
    for on in (True, False):
        torch.manual_seed(0)
        ratio = {"schedule": "fixed", "ratio_start": 1e6 if paired else 0.0}
        method = OAGANMethod(make_context(OAGANMethod, 32, **NO_VGG, **ratio, lambda_mask=-10.0, mask_on_natural=on))
        method.setup_training(make_train_data(size=32, n=8))
        totals[on] = method.train_step(0)
    with_reward, without = totals[True], totals[False]
    assert without["g_mask"] == pytest.approx(with_reward["g_mask"], rel=1e-6)
    expected = 0.0 if paired else -10.0 * with_reward["g_mask"]
    assert with_reward["g_total"] - without["g_total"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
