"""The address list of masters sharing a store, and what a standby's answer names."""

from __future__ import annotations

from titan_runtime.masters import LEADER_KEY, MasterList, addresses, leader_named, led_by, may_follow


def test_an_address_list_is_split_and_trimmed() -> None:
    assert addresses("a:9090, b:9090,") == ["a:9090", "b:9090"]
    assert addresses("[::1]:9090") == ["[::1]:9090"]


def test_the_leader_a_standby_names_goes_first() -> None:
    assert led_by(["a:1", "b:2", "c:3"], "b:2") == ["b:2", "a:1", "c:3"]
    assert led_by(["b:2"], "a:1") == ["a:1", "b:2"]  # a client given only the standby's address
    assert led_by(["a:1", "b:2"], "a:1") == ["a:1", "b:2"]


def test_only_a_standbys_answer_names_a_leader() -> None:
    assert leader_named([("other", "x"), (LEADER_KEY, "a:1")]) == "a:1"
    assert leader_named([(LEADER_KEY, b"a:1")]) == "a:1"
    assert leader_named([(LEADER_KEY, "")]) == ""  # a standby, while nobody leads
    assert leader_named([("other", "x")]) is None
    assert leader_named(None) is None


def test_a_worker_moves_on_to_the_named_leader_else_the_next_master() -> None:
    masters = MasterList("a:1,b:2,c:3")
    assert masters.current == "a:1"
    assert masters.move_on() and masters.current == "b:2"
    assert masters.move_on("c:3") and masters.current == "c:3"
    assert masters.move_on() and masters.current == "a:1"  # the list goes on after the leader
    alone = MasterList("a:1")
    assert not alone.move_on() and alone.current == "a:1"  # one master: dialled again
    assert alone.move_on("127.0.0.1:9") and alone.current == "127.0.0.1:9"


def test_a_leader_outside_the_list_is_followed_only_over_tls_or_on_this_host() -> None:
    assert may_follow("10.0.0.2:9090", ["10.0.0.1:9090", "10.0.0.2:9090"], tls=False)  # one of ours
    assert may_follow("10.0.0.9:9090", ["10.0.0.1:9090"], tls=True)  # its certificate proves it
    assert may_follow("127.0.0.1:9091", ["127.0.0.1:9090"], tls=False)
    assert may_follow("[::1]:9091", ["[::1]:9090"], tls=False)
    assert not may_follow("10.0.0.9:9090", ["10.0.0.1:9090"], tls=False)  # plaintext, elsewhere
    masters = MasterList("10.0.0.1:9090,10.0.0.2:9090")
    assert masters.move_on("203.0.113.7:9090") and masters.current == "10.0.0.2:9090"  # not followed
