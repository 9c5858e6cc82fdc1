"""A helper module that travels with the project folder."""

import os


def banner(step: str) -> str:
    return f"[{step}] on {os.environ.get('TITAN_WORKER_NAME', '?')} in {os.path.basename(os.getcwd())}"
