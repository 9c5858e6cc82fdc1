"""Extract -> train on a GPU-tagged Titan worker -> evaluate, as Dagster assets run by Titan.

Dagster keeps the asset graph, the UI and lineage; every step runs as a Titan job on a worker
picked by its tags: `titan/requirement: GPU` sends `model` to a worker started with `--tags GPU`
(or one where nvidia-smi found a GPU, which Titan tags GPU by itself). `model_card` shows the
other way in: it runs a plain script on Titan through Dagster Pipes and gets its metadata back.

    dagster dev -m example_pipelines.dagster.definitions     # see README.md in this folder
"""

import os
import random
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    AssetSelection,
    Definitions,
    MaterializeResult,
    asset,
    define_asset_job,
)

from titan_dagster import TitanResource, titan_executor

HERE = Path(__file__).resolve().parent


def _where() -> str:
    return os.environ.get("TITAN_WORKER_NAME", "this process (not on Titan)")


@asset
def samples(context: AssetExecutionContext) -> list[list[float]]:
    """A noisy line y = 3x + 2 (a stand-in for reading a real source)."""
    rng = random.Random(7)
    points = [[x / 10, 3 * (x / 10) + 2 + rng.gauss(0, 0.1)] for x in range(200)]
    print(f"extract: {len(points)} samples on worker {_where()}", flush=True)
    context.add_output_metadata({"rows": len(points), "worker": _where()})
    return points


@asset(op_tags={"titan/requirement": "GPU", "titan/priority": "10"})
def model(context: AssetExecutionContext, samples: list[list[float]]) -> dict:
    """Least squares on every other sample, on a worker tagged GPU."""
    train = samples[::2]
    n = len(train)
    mean_x = sum(x for x, _ in train) / n
    mean_y = sum(y for _, y in train) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in train) / sum((x - mean_x) ** 2 for x, _ in train)
    fitted = {"slope": slope, "intercept": mean_y - slope * mean_x, "worker": _where()}
    print(f"train: slope={slope:.3f} on worker {_where()}", flush=True)
    context.add_output_metadata({"slope": slope, "worker": _where()})
    return fitted


@asset
def evaluation(context: AssetExecutionContext, model: dict, samples: list[list[float]]) -> dict:
    """Mean squared error on the held-out half."""
    held_out = samples[1::2]
    mse = sum((model["slope"] * x + model["intercept"] - y) ** 2 for x, y in held_out) / len(held_out)
    print(f"evaluate: mse={mse:.5f} on worker {_where()}", flush=True)
    context.add_output_metadata({"mse": mse, "worker": _where()})
    return {"mse": mse, "trained_on": model["worker"]}


@asset
def model_card(context: AssetExecutionContext, evaluation: dict, titan: TitanResource) -> MaterializeResult:
    """Runs model_card.py on Titan through Dagster Pipes; the script needs only dagster-pipes."""
    return (
        titan.pipes_client()
        .run(context=context, script=str(HERE / "model_card.py"), extras={"mse": evaluation["mse"]})
        .get_materialize_result()
    )


training = define_asset_job("training", selection=AssetSelection.all())

defs = Definitions(
    assets=[samples, model, evaluation, model_card],
    jobs=[training],
    executor=titan_executor,
    # No address or token: the Titan defaults apply (TITAN_ADDRESS, TITAN_TOKEN or ~/.titan/token);
    # inside a step on a Titan worker those are the worker's master and the step's own credential.
    resources={"titan": TitanResource()},
)


def training_job():  # for build_reconstructable_job (tests, scripts)
    return defs.resolve_job_def("training")
