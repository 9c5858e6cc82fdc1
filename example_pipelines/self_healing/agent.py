"""A self-healing agent, with a scripted planner in place of an LLM.

The agent runs inside the cluster as a job. It runs a fragile task; when an attempt fails it records
it in the KV store, asks the planner for a repair, and extends its own run (task.add_jobs) with a
repair job and a new attempt after it, until an attempt passes.
"""

from titan_runtime import TitanJob, task

PLAN = ["clear_cache", "raise_memory", "rebuild_index"]  # what a planner (an LLM) would suggest, in order
MAX_ATTEMPTS = 5

me = task.current()
client = task.client()
key = f"self-healing/{me.run_id}"
step = "step.py"  # shipped with the project folder (project: true); the agent's own working tree
previous = None
for n in range(1, MAX_ATTEMPTS + 1):
    attempt = TitanJob(
        f"attempt_{n}",
        step,
        args=f"fragile {key}",
        parents=[previous] if previous else None,
        allow_failure=True,
    )
    task.add_jobs([attempt])
    record = client.wait(f"{me.run_id}/attempt_{n}")
    task.store_incr(f"{key}/attempts")
    if record.state == "SUCCEEDED":
        print(f"attempt {n} passed")
        break
    repair = PLAN[min(n - 1, len(PLAN) - 1)]
    print(f"attempt {n} failed ({record.reason}); planner says: {repair}")
    task.add_jobs([TitanJob(f"repair_{n}", step, args=f"repair {key} {repair}")])
    previous = f"repair_{n}"
else:
    raise SystemExit(f"gave up after {MAX_ATTEMPTS} attempts")
task.set_result(
    {
        "attempts": int(task.store_get(f"{key}/attempts")),
        "repairs": sorted(task.store_smembers(f"{key}/repairs")),
    }
)
