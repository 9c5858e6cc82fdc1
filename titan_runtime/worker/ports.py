"""Port leases: each service gets ports nobody else on this worker holds, and keeps them until
its process is gone (so a restart never loops on "address already in use")."""

from __future__ import annotations

import random
import socket


class PortUnavailable(RuntimeError):
    pass


def port_is_free(port: int) -> bool:
    """Can a process bind this port (on every address) right now?"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


class PortLeases:
    def __init__(self, low: int = 20000, high: int = 32000) -> None:
        if not 0 < low <= high < 65536:
            raise ValueError(f"invalid port range {low}-{high}")
        self.low, self.high = low, high
        self._leased: set[int] = set()

    @property
    def leased(self) -> frozenset[int]:
        return frozenset(self._leased)

    def lease(self, names: tuple[str, ...], fixed: int = 0, worker: str = "") -> dict[str, int]:
        """One free port per name; `fixed` (single port) must be free or this fails at once."""
        if fixed:
            if fixed in self._leased or not port_is_free(fixed):
                raise PortUnavailable(
                    f"port {fixed} is already in use on worker {worker}; choose another port"
                )
            self._leased.add(fixed)
            return {names[0]: fixed}
        ports: dict[str, int] = {}
        candidates = list(range(self.low, self.high + 1))
        random.shuffle(candidates)  # spread leases, so a just-released port is rarely reused at once
        for port in candidates:
            if len(ports) == len(names):
                break
            if port not in self._leased and port_is_free(port):
                self._leased.add(port)
                ports[names[len(ports)]] = port
        if len(ports) < len(names):
            self.release(ports.values())
            raise PortUnavailable(f"no free port left in {self.low}-{self.high} on worker {worker}")
        return ports

    def release(self, ports: object) -> None:
        for port in ports:  # type: ignore[attr-defined]
            self._leased.discard(port)
