"""A job: its attempts and why each ended, its live log tail, the full log's download, its result,
and approving its gate or cancelling it."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from titan_runtime.client import functions
from titan_runtime.dashboard.auth import describe
from titan_runtime.dashboard.feeds import KEEP_LINES, job_json
from titan_runtime.dashboard.routes.common import client, dash, done, param, user

#: Result text shown on the page (the rest: `titan-runtime result`).
MAX_RESULT_CHARS = 64 * 1024
#: Named artifacts of the job's run listed on its page.
MAX_ARTIFACTS = 200
#: A download goes out in pieces of about this size.
DOWNLOAD_PIECE = 64 * 1024


def _ref(request: Request) -> tuple[str, str, str]:
    run_id, job_id = param(request, "run_id"), param(request, "job_id")
    return run_id, job_id, f"{run_id}/{job_id}"


async def job_page(request: Request) -> Response:
    run_id, job_id, ref = _ref(request)
    c = client(request)
    job = await c.get_job(ref)
    result_text = ""
    if job.has_result:
        result = await c.get_result(ref)
        if functions.is_envelope(result):  # a function task's pickled value or exception
            result_text = functions.describe(result) + "\n\n" + str(result.get("traceback", "")).rstrip()
        else:
            result_text = json.dumps(result, indent=2, sort_keys=True, default=str)
        if len(result_text) > MAX_RESULT_CHARS:
            result_text = result_text[:MAX_RESULT_CHARS] + "\n… (cut: `titan-runtime result` has it whole)"
    gate_open = job.state == "WAITING_APPROVAL" and job.decision is None
    artifacts = await c.list_artifacts(run_id, limit=MAX_ARTIFACTS)
    return dash(request).renderer.page(
        request,
        "job.html",
        nav="runs",
        live=f"/live/jobs/{run_id}/{job_id}",
        job=job,
        attempts=sorted(job.attempts, key=lambda a: -a.number),
        result_text=result_text,
        gate_open=gate_open,
        artifacts=artifacts,
        data={"job": job_json(job), "keep": KEEP_LINES},
    )


async def cancel_job(request: Request) -> Response:
    run_id, job_id, ref = _ref(request)
    who = describe(user(request).identity)
    cancelled = await client(request).cancel(ref, reason=f"cancelled from the dashboard by {who}")
    return await done(request, f"Cancelled {', '.join(cancelled) or 'nothing'}.", f"/jobs/{run_id}/{job_id}")


def _filename(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", "_".join(parts)) + ".log"


async def download_log(request: Request) -> Response:
    """The whole log of an attempt, streamed from the master as it is read: never held whole here,
    whatever its size. Read with the user's token (a 404 before the first byte for a bad ref)."""
    run_id, job_id, ref = _ref(request)
    c = client(request)
    job = await c.get_job(ref)
    raw = request.query_params.get("attempt", "")
    try:
        attempt = int(raw) if raw else (job.attempt or 0)
    except ValueError:
        raise HTTPException(404) from None
    if attempt and not 1 <= attempt <= len(job.attempts):
        raise HTTPException(404, f"{ref} has no attempt {attempt}")

    async def pieces() -> AsyncIterator[bytes]:
        if not attempt:
            return
        piece: list[bytes] = []
        size = 0
        async for line in c.follow_logs(ref, attempt=attempt, follow=False):
            piece.append(line.raw)
            size += len(line.raw)
            if size >= DOWNLOAD_PIECE:
                yield b"".join(piece)
                piece, size = [], 0
        if piece:
            yield b"".join(piece)

    name = _filename(run_id, job_id, f"attempt{attempt}")
    return StreamingResponse(
        pieces(),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


routes = [
    Route("/jobs/{run_id}/{job_id}", job_page),
    Route("/jobs/{run_id}/{job_id}/log", download_log),
    Route("/jobs/{run_id}/{job_id}/cancel", cancel_job, methods=["POST"]),
]
