"""glibc takes the allocator thresholds `bench` sets at start (bench.allocator)."""

import platform
import sys

import pytest

from bench.allocator import keep_freed_memory


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only"
)
def test_glibc_accepts_both_thresholds():
    assert keep_freed_memory() is True  # mallopt returns 0 for a value it refuses (e.g. above its mmap maximum)


def test_elsewhere_it_changes_nothing(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False
