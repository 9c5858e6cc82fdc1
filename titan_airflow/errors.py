"""What the Airflow integration raises. Each message says what was wrong and what to do."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException


class TitanConfigError(AirflowException, ValueError):
    """An operator was given arguments that cannot work (raised when the DAG file is parsed)."""


class TitanConnectionConfigError(AirflowNotFoundException):
    """The Titan connection is missing or malformed; the message says how to define it."""


class TitanJobFailed(AirflowException):
    """The Titan job did not succeed; the message has its end state and the tail of its output."""
