"""Titan run ids for Airflow tries: valid, deterministic, distinct per try (no Airflow, no processes)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from titan_airflow.naming import ID_PATTERN, run_labels, titan_job_id, titan_run_id

AIRFLOW_RUN = "manual__2026-11-28T02:01:42.869458+00:00"


def test_run_id_is_readable_and_ends_with_the_try() -> None:
    run_id = titan_run_id("etl", "load", AIRFLOW_RUN, 3)
    assert ID_PATTERN.match(run_id)
    assert run_id.startswith("af_etl.load.") and run_id.endswith(".try3")


def test_same_try_same_id_and_every_part_changes_it() -> None:
    base = ("etl", "load", AIRFLOW_RUN, 1, -1)
    assert titan_run_id(*base) == titan_run_id(*base)
    variants = [
        ("etl2", "load", AIRFLOW_RUN, 1, -1),
        ("etl", "load2", AIRFLOW_RUN, 1, -1),
        ("etl", "load", AIRFLOW_RUN + "x", 1, -1),
        ("etl", "load", AIRFLOW_RUN, 2, -1),
        ("etl", "load", AIRFLOW_RUN, 1, 0),
    ]
    ids = {titan_run_id(*v) for v in variants} | {titan_run_id(*base)}
    assert len(ids) == len(variants) + 1


def test_ids_that_sanitise_alike_stay_apart() -> None:
    assert titan_run_id("a:b", "t", "r", 1) != titan_run_id("a_b", "t", "r", 1)


def test_long_ids_are_cut_to_titans_limit_and_keep_the_try() -> None:
    run_id = titan_run_id("d" * 250, "t" * 250, "r" * 250, 12, map_index=7)
    assert len(run_id) <= 128 and ID_PATTERN.match(run_id) and run_id.endswith(".try12")


@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300), st.text(max_size=300))
def test_any_airflow_ids_make_a_valid_titan_id(dag_id: str, task_id: str, run_id: str) -> None:
    assert ID_PATTERN.match(titan_run_id(dag_id, task_id, run_id, 1))
    assert ID_PATTERN.match(titan_job_id(task_id))


def test_labels_name_the_airflow_try() -> None:
    assert run_labels("etl", "load", AIRFLOW_RUN, 2, 4) == {
        "airflow.dag_id": "etl",
        "airflow.task_id": "load",
        "airflow.run_id": AIRFLOW_RUN,
        "airflow.try_number": "2",
        "airflow.map_index": "4",
    }


def test_a_runs_labels_say_which_try_of_which_map_index_it_is() -> None:
    from titan_airflow.naming import instance_labels, try_of

    labels = run_labels("etl", "load", AIRFLOW_RUN, 3)
    assert instance_labels("etl", "load", AIRFLOW_RUN).items() <= labels.items()
    assert try_of(labels) == 3 and try_of(labels, map_index=0) is None
    mapped = run_labels("etl", "load", AIRFLOW_RUN, 2, map_index=4)
    assert try_of(mapped, map_index=4) == 2 and try_of(mapped) is None
    assert try_of({**labels, "airflow.try_number": "x"}) is None
