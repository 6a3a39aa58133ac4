"""Hook specifications. Plugins implement these with ``@bench.hookimpl``."""

import pluggy

PROJECT = "deocc_bench"  # hook namespace and entry-point group; unique, unlike the CLI name "bench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_methods(register):
    """Register de-occlusion methods: call ``register(MethodSpec(...))`` once per method or variant.

    Factories are ``"module:attr"`` strings so that listing plugins never imports torch.
    """


@hookspec
def register_recognizers(register):
    """Register face recognizers for identification (Fig. 12): call ``register(RecognizerSpec(...))`` once per
    recognizer (``bench.identification.recognizer``); factories are ``"module:attr"`` strings, as for methods."""
