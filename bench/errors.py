"""The one error hierarchy: every problem a user can fix is a :class:`BenchError`, whose message is one line
naming the cause and the fix; the CLI prints it as ``error: <message>`` (``bench.cli.main``), never a traceback.

Torch-free and import-free, so any module (the data loaders included) can raise these without an import circle.
Some classes also derive from the built-in error a caller of the library API would catch (``ValueError`` for
bad values and files), so code written against those keeps working.
"""

from __future__ import annotations


class BenchError(Exception):
    """Root of every error the harness raises for the user: the message is the whole story."""


class RunError(BenchError):
    """A run's configuration or plan cannot work; the message says how to fix it."""


class OptionError(BenchError, ValueError):
    """An option the user gave is unknown or has a bad value; the message says which and how to fix it."""


class PluginError(BenchError):
    """A plugin failed to load or register (fatal under ``DEOCC_STRICT_PLUGINS=1``), or a plugin switch is bad."""


class DataError(BenchError, ValueError):
    """A dataset on disk is missing, incomplete or malformed; the message names the file and the fix."""


class CheckpointError(BenchError):
    """A stored model cannot be served: unreadable, damaged (its digest disagrees) or trained under another key."""


class TrainingDiverged(BenchError):
    """A loss became NaN or infinite."""


class FolderBusy(BenchError):
    """Another process holds a folder's lock; the message names it."""


class InvalidName(BenchError, ValueError):
    """A method or recognizer name outside the one grammar (:func:`bench.registry.check_name`)."""
