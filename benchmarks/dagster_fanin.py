"""The Dagster jobs bench_python.py runs: 8 trivial leaves and one fan-in (issue 24's 9-op job),
and a chain of 30 ops, in an importable module because each step process loads them from here."""

from dagster import in_process_executor, job, multiprocess_executor, op

from titan_dagster import titan_executor

LEAVES = 8


def _leaf(i: int):  # type: ignore[no-untyped-def]
    @op(name=f"leaf_{i}")
    def leaf() -> int:
        return i

    return leaf


_LEAF_OPS = [_leaf(i) for i in range(LEAVES)]


@op
def total(values: list[int]) -> int:
    return sum(values)


def _graph() -> None:
    total([leaf() for leaf in _LEAF_OPS])


# Each job a function of its own name: reconstructable() finds a job in its module by that name.
@job(executor_def=titan_executor)
def fanin_titan() -> None:
    _graph()


@job(executor_def=multiprocess_executor)
def fanin_multiprocess() -> None:
    _graph()


@job(executor_def=in_process_executor)
def fanin_in_process() -> None:
    _graph()


CHAIN = 30


@op
def chain_start() -> int:
    return 0


def _link(i: int):  # type: ignore[no-untyped-def]
    @op(name=f"link_{i}")
    def link(value: int) -> int:
        return value + 1

    return link


_LINKS = [_link(i) for i in range(1, CHAIN)]


def _chain() -> None:
    value = chain_start()
    for link in _LINKS:
        value = link(value)


@job(executor_def=titan_executor)
def chain_titan() -> None:
    _chain()


@job(executor_def=multiprocess_executor)
def chain_multiprocess() -> None:
    _chain()


@job(executor_def=in_process_executor)
def chain_in_process() -> None:
    _chain()
