"""`python -m titan_dagster.resume_run`: Dagster's `dagster api resume_run`, its arguments read from
the environment (DAGSTER_COMPRESSED_RESUME_RUN_ARGS) as `dagster api execute_run` reads its own.

Dagster's command takes them on its command line, where every user of the worker's host reads
them (`ps`), and they hold the instance's configuration (storage, credentials)."""

from __future__ import annotations

import base64
import os
import sys
import zlib

from titan_dagster._compat import resume_run_command

RESUME_ARGS_ENV = "DAGSTER_COMPRESSED_RESUME_RUN_ARGS"


def main() -> None:
    compressed = os.environ.pop(RESUME_ARGS_ENV, None)  # not for the processes the run starts
    if not compressed:
        sys.exit(f"{RESUME_ARGS_ENV} is not set: this runs a run worker that TitanRunLauncher resumes")
    resume_run_command.callback(zlib.decompress(base64.b64decode(compressed)).decode())  # type: ignore[misc]


if __name__ == "__main__":
    main()
