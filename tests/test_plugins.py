"""Plugin discovery: entry points of installed distributions, failure isolation, switches."""

import json
import subprocess
import sys
import textwrap

import pluggy
import pytest
from typer.testing import CliRunner

from bench import hookimpl, plugins
from bench.cli import app
from bench.method import MethodSpec

THIRD_PARTY = '''
import numpy as np
from bench import hookimpl
from bench.method import Method, MethodSpec, Restoration


class MeanFill(Method):
    """Fills the hole with the mean colour of the known pixels: a plugin written outside the harness."""

    trainable = False

    def restore(self, images, masks):
        known = (1 - masks)
        mean = (images * known).sum(dim=(2, 3), keepdim=True) / known.sum(dim=(2, 3), keepdim=True).clamp(min=1)
        return Restoration(images * known + mean * masks)


@hookimpl
def register_methods(register):
    register(MethodSpec(name="meanfill", factory="deocc_meanfill:MeanFill", summary="mean-colour fill",
                        needs_mask=True))
'''


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path holding a third-party plugin distribution and a broken one."""
    (tmp_path / "deocc_meanfill.py").write_text(THIRD_PARTY)
    for dist, module in (("deocc_meanfill", "deocc_meanfill"), ("deocc_broken", "deocc_missing_module")):
        info = tmp_path / f"{dist}-0.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
        (info / "entry_points.txt").write_text(f"[deocc_bench]\n{dist.removeprefix('deocc_')} = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.reset()
    yield tmp_path
    plugins.reset()


def test_entry_point_plugin_is_found_and_broken_one_is_reported(site):
    reg = plugins.registry()
    by_name = {p.name: p for p in reg.plugins}
    assert by_name["meanfill"].methods == ["meanfill"] and by_name["meanfill"].version == "0.3"
    assert by_name["broken"].error.startswith("ModuleNotFoundError")
    assert "identity" in reg.methods  # the built-ins still load
    assert reg.get("meanfill").plugin == "meanfill"


def test_strict_mode_makes_a_broken_plugin_fatal(site, monkeypatch):
    monkeypatch.setenv("DEOCC_STRICT_PLUGINS", "1")
    with pytest.raises(plugins.PluginError, match="broken"):
        plugins.registry()


def test_load_and_disable_switches(site, monkeypatch):
    monkeypatch.setenv("DEOCC_LOAD_PLUGINS", "meanfill")
    assert set(plugins.registry().methods) == {"meanfill"}
    plugins.reset()
    monkeypatch.delenv("DEOCC_LOAD_PLUGINS")
    monkeypatch.setenv("DEOCC_DISABLE_PLUGINS", "meanfill,broken")
    reg = plugins.registry()
    assert "meanfill" not in reg.methods and "broken" not in {p.name for p in reg.plugins}


def test_bench_list_shows_third_party_plugin(site):
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["plugin"]: r for r in json.loads(result.output)}
    assert rows["meanfill"]["methods"] == ["meanfill"]
    assert rows["broken"]["error"]
    assert "oagan" in rows["oagan"]["methods"]


def test_in_process_registration_and_unknown_method_hint():
    plugins.reset()
    pm = plugins.get_manager()

    class Extra:
        __name__ = "extra"

        @hookimpl
        def register_methods(self, register):
            register(MethodSpec(name="extra_identity", factory="baselines.classical:IdentityMethod", summary="x"))

    pm.register(Extra(), name="undo-extra")
    try:
        reg = plugins.registry()
        spec = reg.get("extra_identity")
        assert spec.plugin == "undo-extra" and spec.load().__name__ == "IdentityMethod"
        with pytest.raises(plugins.PluginError, match="did you mean extra_identity"):
            reg.get("extra_identiti")
    finally:
        pm.unregister(name="undo-extra")
        plugins.reset()


def test_typo_in_hook_name_is_caught():
    pm = plugins.make_manager()

    class Typo:
        @hookimpl
        def register_method(self, register):  # missing "s"
            pass

    pm.register(Typo(), name="typo")
    with pytest.raises(pluggy.PluginValidationError, match="unknown hook"):
        plugins.collect(pm, [])


def _plugin(name: str, *specs: MethodSpec):
    class Plugin:
        @hookimpl
        def register_methods(self, register):
            for spec in specs:
                register(spec)

    Plugin.__name__ = name
    return Plugin()


def test_two_plugins_registering_one_recognizer_mark_both_and_leave_their_methods(monkeypatch):
    from bench.identification.recognizer import RecognizerSpec

    def plugin(method: str):
        class Plugin:
            @hookimpl
            def register_methods(self, register):
                register(MethodSpec(name=method, factory="baselines.classical:IdentityMethod", summary=""))

            @hookimpl
            def register_recognizers(self, register):
                register(RecognizerSpec("arcface", "pkg:ArcFace", "an ArcFace"))

        return Plugin()

    pm = plugins.make_manager()
    pm.register(plugin("m1"), name="first")
    pm.register(plugin("m2"), name="second")
    reg = plugins.collect(pm, [])
    assert {"m1", "m2"} <= set(reg.methods) and "arcface" not in reg.recognizers
    errors = {p.name: p.error for p in reg.plugins}
    assert "recognizer 'arcface' is registered by both first and second" in errors["first"] == errors["second"]
    with pytest.raises(plugins.PluginError, match=r"'arcface' is registered by several plugins \(first, second\)"):
        reg.get("arcface", "recognizer")
    monkeypatch.setenv("DEOCC_STRICT_PLUGINS", "1")
    with pytest.raises(plugins.PluginError, match="recognizer 'arcface' is registered by both first and second"):
        plugins.collect(pm, [])


def test_two_plugins_registering_one_name_is_one_line_naming_both(monkeypatch):
    pm = plugins.make_manager()
    spec = MethodSpec(name="x", factory="baselines.classical:IdentityMethod", summary="")
    pm.register(_plugin("a", spec, MethodSpec(name="y", factory="a:b", summary="")), name="first")
    pm.register(_plugin("b", spec), name="second")
    reg = plugins.collect(pm, [])
    assert "y" in reg.methods and "x" not in reg.methods  # the rest of both plugins stays usable
    errors = {p.name: p.error for p in reg.plugins}
    assert "registered by both first and second" in errors["first"] and errors["first"] == errors["second"]
    with pytest.raises(plugins.PluginError, match=r"'x' is registered by several plugins \(first, second\)"):
        reg.get("x")
    monkeypatch.setenv("DEOCC_STRICT_PLUGINS", "1")
    with pytest.raises(plugins.PluginError, match="registered by both first and second"):
        plugins.collect(pm, [])


@pytest.mark.parametrize("name", ["a/b", "A", "x:", ":x", "x:y:z", "x y", "1x", "x@gt", "../x", ""])
def test_method_names_follow_one_grammar(name):
    with pytest.raises(ValueError, match="is not valid: use 'name' or 'name:variant'"):
        MethodSpec(name=name, factory="a:b", summary="")


def test_variants_name_what_they_ablate():
    assert MethodSpec(name="oagan:no_style", factory="a:b", summary="").variant_of == "oagan"
    assert MethodSpec(name="oagan", factory="a:b", summary="").variant_of == ""
    with pytest.raises(ValueError, match="a variant of 'pconv' is named pconv:"):
        MethodSpec(name="oagan:x", factory="a:b", summary="", variant_of="pconv")


FAST = {"yeh": {"iterations": 2, "candidates": 1}}  # Yeh et al.'s search: a short one is enough to check the path


def test_every_registered_factory_builds_and_restores_on_cpu():
    """Each built-in method as the harness builds it (declared options, quick profile, 64 px): it restores a face."""
    import torch

    from bench.method import make_context

    plugins.reset()
    reg = plugins.registry()
    assert not [p for p in reg.plugins if p.error]
    x, m = torch.rand(1, 3, 64, 64), torch.zeros(1, 1, 64, 64)
    m[..., 20:40, 16:48] = 1
    for name, spec in sorted(reg.methods.items()):
        cls = spec.load()
        ctx = make_context(
            cls,
            image_size=64,
            profile="quick",
            device=torch.device("cpu"),
            options=(spec.options, FAST.get(name, {})),
            name=name,
            attribute_names=tuple(f"a{i}" for i in range(10)),
        )
        method = cls(ctx)
        out = method.restore(x * (1 - m) if spec.needs_mask else x, m if spec.needs_mask else None)
        assert out.images.shape == x.shape and torch.isfinite(out.images).all(), name
        assert (out.masks is not None) == spec.predicts_mask, name


def test_bench_list_imports_no_torch():
    code = "import sys; from bench import plugins; plugins.registry(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", textwrap.shorten(out.stderr, 300)


def test_standard_profile_builds_on_quick_for_a_plugin_that_declares_nothing_for_it():
    """A third-party method without ``standard`` values runs its quick ones there (never the paper's widths);
    a method that declares them gets them on top of its quick values."""
    from baselines.lightcnn import LightCNNRecognizer
    from bench.options import for_profile, profile_chain
    from oagan.method import OAGANMethod
    from tests.tiny_plugin import TinyFill

    assert profile_chain("standard") == ["quick", "standard"] and profile_chain("paper") == ["paper"]
    tiny = TinyFill.Options.resolve("standard", {})
    assert tiny.batch_size == 2 and TinyFill.steps_for("standard") == 6
    std, quick = OAGANMethod.Options.resolve("standard", {}), OAGANMethod.Options.resolve("quick", {})
    assert (std.mask_on_natural, quick.mask_on_natural) == (False, True)
    assert std.as_dict() | {"mask_on_natural": True, "lambda_mask_sup": 15.0} == quick.as_dict()  # standard: x10
    assert (OAGANMethod.steps_for("quick"), OAGANMethod.steps_for("standard")) == (240, 1_200)
    assert for_profile(LightCNNRecognizer.default_steps, "standard") == 600
    assert for_profile({}, "standard", 7) == 7


def test_every_built_in_trained_method_declares_a_longer_standard_budget_than_quick():
    """The laptop profile is explicit for our own methods: more steps than quick, no more than the paper's."""
    plugins.reset()
    reg = plugins.registry()
    for name, spec in sorted(reg.methods.items()):
        cls = spec.load()
        if cls.steps_for("paper") == 0:  # identity, telea: nothing to train
            continue
        assert "standard" in cls.default_steps, name
        assert cls.steps_for("quick") < cls.steps_for("standard") <= cls.steps_for("paper"), name


def _labels(methods: list[str], mask_source: list[str] | None = None) -> list[str]:
    from bench.planning import RunConfig, plan_run

    config = RunConfig(methods=methods, **({"mask_source": mask_source} if mask_source else {}))
    plan = plan_run(plugins.registry(), config.methods, mask_source=config.mask_source, config=config)
    return [job.label for job in plan.jobs]


def test_every_run_scores_the_reference_once():
    """The input itself (the declared reference, identity) is a label of every run: added when the run does not
    name it, never twice when it does."""
    plugins.reset()
    assert [n for n, s in plugins.registry().methods.items() if s.reference] == ["identity"]
    assert _labels(["oagan", "pconv"]) == ["oagan", "pconv@oagan", "identity"]
    assert _labels(["identity", "telea"], ["gt"]) == ["identity", "telea@gt"]
    assert _labels(["telea", "identity"], ["gt", "oagan"]) == ["oagan", "telea@gt", "telea@oagan", "identity"]


def test_a_run_without_a_reference_plugin_goes_on_without_one(monkeypatch):
    monkeypatch.setenv("DEOCC_DISABLE_PLUGINS", "classical")
    plugins.reset()
    try:
        assert _labels(["oagan", "pconv"]) == ["oagan", "pconv@oagan"]
    finally:
        plugins.reset()
