"""YAML alias expansion is bounded: a few hundred bytes may not stand for gigabytes.

Each refused document here would expand to at least 10^9 strings if built (gigabytes of memory,
and more when printed), so a refusal that came after building it would not come at all.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from titan_runtime import cli
from titan_runtime.client.pipeline import PipelineError, load_pipeline
from titan_runtime.clusterconfig import ClusterConfigError, load_cluster_file
from titan_runtime.yamlbudget import NODE_COST, YamlBudgetError, check_expansion, load


def laughs(indent: str = "", levels: str = "bcdefghi") -> str:
    """Ten strings, ten aliases of those, ... nine levels deep: 10^9 strings in about 460 bytes."""
    lines = [f'{indent}a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    previous = "a"
    for name in levels:
        lines.append(f"{indent}{name}: &{name} [" + ",".join([f"*{previous}"] * 10) + "]")
        previous = name
    return "\n".join(lines) + "\n"


PIPELINE = "name: lol\njobs:\n  - id: j\n    command: [echo, hi]\n    env:\n" + laughs("      ")


def test_the_billion_laughs_pipeline_is_refused_naming_the_line_and_the_anchor(tmp_path: Path) -> None:
    path = tmp_path / "lol.yaml"
    path.write_text(PIPELINE)
    assert len(PIPELINE) < 500
    with pytest.raises(PipelineError) as caught:
        load_pipeline(path)
    [error] = caught.value.errors
    assert error.startswith("lol.yaml:11: expands to more than 10 MB through aliases (&anchor/*alias)")
    assert "repeats &e (1.8 MB expanded) 10 times" in error


def test_the_billion_laughs_cluster_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text("master:\n  limits:\n" + laughs("    ") + "pools: []\n")
    with pytest.raises(ClusterConfigError) as caught:
        load_cluster_file(path)
    [error] = caught.value.errors
    assert error.startswith("line 8: expands to more than 10 MB through aliases (&anchor/*alias)")


def test_the_count_is_linear_in_the_distinct_nodes() -> None:
    # Each level doubles: 2^200 strings, counted in a few hundred steps thanks to memoisation.
    text = "l0: &l0 [x, x]\n" + "".join(f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}]\n" for i in range(1, 200))
    with pytest.raises(YamlBudgetError, match=r"repeats &l1[0-9] "):
        load(text)


@pytest.mark.parametrize(
    "text",
    ["a: &a [1, *a]\n", "a: &a {k: [x, {deeper: *a}]}\n", "top: &top\n  - one\n  - *top\n"],
)
def test_a_recursive_alias_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(YamlBudgetError, match=r"&(a|top) is used inside itself \(a recursive alias\)"):
        load(text)
    path = tmp_path / "p.yaml"
    path.write_text("name: rec\njobs:\n  - {id: j, command: [echo]}\nlabels:\n" + textwrap.indent(text, "  "))
    with pytest.raises(PipelineError, match=r"p.yaml:\d+: &(a|top) is used inside itself"):
        load_pipeline(path)


def test_a_document_nested_too_deeply_for_the_parser_is_refused_not_crashed() -> None:
    with pytest.raises(YamlBudgetError, match="nested too deeply"):
        load("x: " + "[" * 5000 + "]" * 5000 + "\n")


def test_normal_documents_with_aliases_still_load(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            """
            name: shared
            jobs:
              - id: a
                command: [echo, a]
                env: &common {REGION: eu, MODE: fast}
                retries: &retries {attempts: 3, backoff: 1}
              - id: b
                command: [echo, b]
                env: *common
                retries: *retries
                depends_on: [a]
            """
        )
    )
    jobs = load_pipeline(path).jobs
    assert [job.env for job in jobs] == [{"REGION": "eu", "MODE": "fast"}] * 2
    # Ten levels of ten would be too much; a document just under the budget loads whole.
    text = laughs(levels="bcde")  # 10^5 strings of one character: about 2 MB counted
    assert load(text)["e"][9][9][9][9] == ["x"] * 10


def test_the_size_counts_every_reference_of_a_shared_node() -> None:
    node = yaml.compose("a: &a [xy, z]\nb: [*a, *a]\n")
    list_a = NODE_COST + (NODE_COST + 2) + (NODE_COST + 1)
    expected = NODE_COST + (NODE_COST + 1) + list_a + (NODE_COST + 1) + (NODE_COST + 2 * list_a)
    assert check_expansion(node) == expected
    with pytest.raises(YamlBudgetError):
        check_expansion(node, limit=expected - 1)


def test_validate_prints_one_line_per_error_and_fails(tmp_path: Path) -> None:
    path = tmp_path / "lol.yaml"
    path.write_text(PIPELINE)
    result = CliRunner().invoke(cli.cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "lol.yaml:11: expands to more than 10 MB through aliases (&anchor/*alias): this value repeats &e "
        "(1.8 MB expanded) 10 times; write the values out or use fewer aliases",
        f"titan-runtime: error: {path} is not a valid pipeline (1 error(s))",
    ]
