"""Exceptions of the Dagster integration."""

from __future__ import annotations


class TitanConfigError(ValueError):
    """Bad executor, launcher, resource or op-tag configuration; the message says what to change."""
