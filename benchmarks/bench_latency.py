"""Sequential submit-to-result of a `/bin/true` command job against spawning `/bin/true` directly.
Target: overhead <= 5 ms per job.

Three more rows explain where the overhead goes: the same jobs with commits that skip the fsync
(`master --no-fsync`) and with the in-memory store (no commit to disk), and one bare gRPC round
trip to the same master (a `list_workers` call), since a job costs two client calls, messages
each way on the worker's stream and two commits, one of whose fsyncs is on the critical path."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable

from _common import Timer, cluster, median, table

from titan_runtime import TitanClient, TitanJob

N = 200
CONFIGS = [("sqlite", "sqlite", ()), ("no-fsync", "sqlite", ("--no-fsync",)), ("memory", "memory", ())]


def main() -> None:
    # The clusters run side by side and the measurements take turns (one job on each, one direct
    # spawn, round after round): this VM's speed drifts by tens of percent within a minute, and
    # the rows must see the same machine to be compared.
    with contextlib.ExitStack() as stack:
        clients = {
            name: stack.enter_context(cluster([("w1", 2)], store=store, master_args=args)).client
            for name, store, args in CONFIGS
        }

        def titan_job(client: TitanClient) -> Callable[[], None]:
            def run() -> None:
                assert client.wait(client.submit_job(TitanJob(command=["/bin/true"]))).state == "SUCCEEDED"

            return run

        steps: list[tuple[str, Callable[[], None]]] = [(name, titan_job(c)) for name, c in clients.items()]
        steps.append(("direct", lambda: subprocess.run(["/bin/true"], check=True)))
        steps.append(("round trip", clients["sqlite"].list_workers))
        for _ in range(20):  # warm up connections and caches
            for _, step in steps:
                step()
        samples: dict[str, list[float]] = {name: [] for name, _ in steps}
        for i in range(N):
            for name, step in steps[i % len(steps) :] + steps[: i % len(steps)]:  # no fixed order
                with Timer() as t:
                    step()
                samples[name].append(t.seconds)
    base = median(samples["direct"])

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.2f}"

    titan = median(samples["sqlite"])
    table(
        f"/bin/true submitted and awaited {N} times in sequence (median per job; baseline: spawning it directly)",
        [
            ("ms per job", ms(titan), ms(base), f"{titan / base:.1f}", ""),
            ("overhead ms", ms(titan - base), "0", "", "<= 5 ms"),
            ("overhead ms, --no-fsync", ms(median(samples["no-fsync"]) - base), "0", "", ""),
            ("overhead ms, --store memory", ms(median(samples["memory"]) - base), "0", "", ""),
            ("one gRPC round trip ms", ms(median(samples["round trip"])), "", "", ""),
        ],
    )


if __name__ == "__main__":
    main()
