"""Failed authentications are answered later and later per host, and logged now and then."""

from __future__ import annotations

from titan_runtime.config import peer_host
from titan_runtime.master import throttle
from titan_runtime.master.throttle import AuthFailures


def test_each_failure_after_the_first_few_doubles_the_wait_up_to_a_cap() -> None:
    failures = AuthFailures()
    delays = [failures.failed(f"ipv4:10.0.0.5:{port}", 100.0 + port).delay for port in range(12)]
    assert delays == [0, 0, 0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    assert failures.failed("ipv4:10.0.0.6:1", 120.0).delay == 0  # another host starts from nothing
    assert failures.failed("ipv4:10.0.0.5:1", 112.0 + 60.5).delay == 0  # quiet for a minute: forgotten


def test_the_first_failure_and_every_tenth_are_logged() -> None:
    failures = AuthFailures()
    logged = [n for n in range(1, 31) if failures.failed("ipv6:[::1]:5", float(n)).log]
    assert logged == [1, 10, 20, 30]


def test_the_table_of_hosts_is_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(throttle, "MAX_PEERS", 3)
    failures = AuthFailures()
    for host in ("a", "b", "c", "d"):
        failures.failed(f"ipv4:{host}:1", 0.0)
    assert list(failures._peers) == ["b", "c", "d"]


def test_peer_host_drops_the_port() -> None:
    assert peer_host("ipv4:10.0.0.5:51234") == "10.0.0.5"
    assert peer_host("ipv6:[::1]:51234") == "::1"
    assert peer_host("unix:/tmp/sock") == "unix:/tmp/sock"
