"""cachehub.flights: per-key single flight that never makes an owner wait for itself."""

from __future__ import annotations

from cachehub.flights import Flights


def test_the_first_owner_leads_and_the_next_waits() -> None:
    flights = Flights()
    led, awaited = flights.start("k", "A")
    assert led is not None
    assert awaited is None
    woken: list[str] = []
    second, theirs = flights.start("k", "B", lambda: woken.append("B"))
    assert second is None
    assert theirs is led
    assert not led.done.is_set()
    flights.finish("k", led)
    assert led.done.is_set()
    assert woken == ["B"]
    flights.stop_waiting("B")
    again, none = flights.start("k", "B")  # the flight ended: B leads a new one
    assert again is not None
    assert again is not led
    assert none is None


def test_other_keys_never_wait() -> None:
    flights = Flights()
    a, _ = flights.start("a", "A")
    b, waited = flights.start("b", "A")  # the same owner, nested: another key is free
    assert a is not None
    assert b is not None
    assert waited is None


def test_an_owner_never_waits_for_its_own_flight() -> None:
    flights = Flights()
    flights.start("k", "A")
    assert flights.start("k", "A") == (None, None)


def test_a_cycle_through_three_owners_is_not_waited_for() -> None:
    flights = Flights()
    for owner, key in (("A", "a"), ("B", "b"), ("C", "c")):
        led, _ = flights.start(key, owner)
        assert led is not None
    assert flights.start("b", "A")[1] is not None  # A waits for B
    assert flights.start("c", "B")[1] is not None  # B waits for C
    assert flights.start("a", "C") == (None, None)  # C would wait for A, who waits for C
    flights.stop_waiting("A")
    assert flights.start("a", "C")[1] is not None  # the chain is broken: C may wait


def test_a_waker_of_a_closed_loop_does_not_stop_the_others() -> None:
    flights = Flights()
    led, _ = flights.start("k", "A")
    assert led is not None
    woken: list[str] = []

    def closed() -> None:
        raise RuntimeError("Event loop is closed")

    flights.start("k", "B", closed)
    flights.start("k", "C", lambda: woken.append("C"))
    flights.finish("k", led)
    assert woken == ["C"]
