"""The SDK's own pieces, without a master: the DAG builder, job options, and the two clients' parity."""

from __future__ import annotations

import inspect

import pytest

from titan_runtime import AsyncTitanClient, InvalidJob, TitanClient, TitanJob


def test_builder_links_parents_like_airflow() -> None:
    a, b, c, d = (TitanJob(name, command=["true"]) for name in "abcd")
    assert (a >> [b, c]) == [b, c]
    [b, c] >> d
    assert (b.parent_ids, c.parent_ids, d.parent_ids) == (["a"], ["a"], ["b", "c"])
    a >> b  # linking twice adds nothing
    assert b.parent_ids == ["a"]


def test_original_parameters_and_their_normal_forms() -> None:
    job = TitanJob(
        "train",
        "train.py",
        "RUN_PAYLOAD",
        "--epochs 3 --name 'two words'",
        ["prep"],
        0,
        False,
        10,
        500,
        True,
        "GPU",
    )
    assert job.arg_list == ["--epochs", "3", "--name", "two words"]
    assert (job.parent_ids, job.priority, job.delay, job.affinity_mode, job.tag_list) == (
        ["prep"],
        10,
        500,
        "hard",
        ["GPU"],
    )
    assert TitanJob(filename="dir/my-script.py").id == "my-script"
    assert TitanJob(command=["/usr/bin/env", "x"]).id == "env"
    assert TitanJob(command=["x"], map_over="gen").parent_ids == ["gen"]


@pytest.mark.parametrize(
    ("retries", "expected"),
    [
        (None, None),
        (2, {"attempts": 3}),
        (
            {"attempts": 3, "backoff": {"initial": 1, "factor": 3}},
            {"attempts": 3, "backoff_initial": 1.0, "backoff_factor": 3.0},
        ),
        (
            {"attempts": 2, "fallback": [{"requirement": "GPU"}, {"requirement": "GENERAL"}]},
            {"attempts": 2, "fallback": [["GPU"], []]},
        ),
    ],
)
def test_retry_policies(retries: object, expected: object) -> None:
    assert TitanJob(command=["x"], retries=retries).retry_policy() == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("retries", [-1, {"attempts": 2, "tries": 3}, {"backoff": "soon"}, True])
def test_bad_retry_policies_are_refused(retries: object) -> None:
    with pytest.raises(InvalidJob):
        TitanJob(command=["x"], retries=retries).retry_policy()  # type: ignore[arg-type]


def test_approval_from_the_original_vocabulary() -> None:
    assert TitanJob(command=["x"], hitl_message="ok?", max_wait_seconds=60).approval_gate() == {
        "message": "ok?",
        "timeout": 60.0,
    }
    assert TitanJob(command=["x"]).approval_gate() is None
    with pytest.raises(InvalidJob):
        TitanJob(command=["x"], approval={"timeout": -1}).approval_gate()


def test_the_asyncio_client_has_every_call_of_the_blocking_one() -> None:
    def calls(cls: type) -> set[str]:
        return {
            name
            for name, member in inspect.getmembers(cls)
            if not name.startswith("_") and (inspect.isfunction(member) or inspect.isasyncgenfunction(member))
        }

    assert calls(TitanClient) - {"close"} <= calls(AsyncTitanClient)
