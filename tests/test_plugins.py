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
            register(MethodSpec(name="extra_identity", factory="baselines.classical:Identity", summary="x"))

    pm.register(Extra(), name="undo-extra")
    try:
        reg = plugins.registry()
        assert reg.get("extra_identity").plugin == "undo-extra"
        with pytest.raises(KeyError, match="did you mean extra_identity"):
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


def test_duplicate_method_names_are_an_error():
    pm = plugins.make_manager()

    class Twice:
        @hookimpl
        def register_methods(self, register):
            register(MethodSpec(name="x", factory="a:b", summary=""))
            register(MethodSpec(name="x", factory="a:b", summary=""))

    pm.register(Twice(), name="twice")
    with pytest.raises(plugins.PluginError, match="registered twice"):
        plugins.collect(pm, [])


def test_bench_list_imports_no_torch():
    code = "import sys; from bench import plugins; plugins.registry(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", textwrap.shorten(out.stderr, 300)
