"""Reimplemented baseline methods, each registered by a thin adapter in plugins/."""
