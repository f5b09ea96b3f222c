"""The device watermark: how far event time is final, from what each device has sent.

One rule for the single process (:class:`coverwatch.server.devices.DeviceWatch`) and
for the distributed mode's owners (:class:`DeviceClock`, fed from the site's stream and
kept in its checkpoint), so both call the same events late:

the horizon is the ``min`` over active devices of the newest time each has reported,
kept between ``now - max_lateness`` and ``now - lateness``. A phone with steady upload
latency up to ``max_lateness`` (uploading in bursts) counts live; when every device
reports promptly the horizon trails the clock by only ``lateness``. A device is active
while it uploaded within ``max_lateness``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

__all__ = ["DeviceClock", "NewestTimes", "device_horizon"]


def device_horizon(now_us: int, lateness_us: int, max_lateness_us: int,
                   seen: Iterable[tuple[int | None, int]]) -> int:
    """The watermark at ``now_us`` from each device's (newest time, last upload)."""
    floor = now_us - max(max_lateness_us, lateness_us)
    ceiling = now_us - lateness_us
    active = [t for t, received in seen if t is not None and received > floor]
    return max(floor, min([ceiling, *active]))


class NewestTimes:
    """:func:`device_horizon` kept as the devices report, not a scan of every device per
    tick: a heap of (newest time, device), its entries checked when they reach the top.

    ``current(device)`` gives a device's (newest time, last upload) as its owner holds
    them now. :meth:`noted` must follow every change of either: an entry whose time is
    no longer the device's newest, or whose device went quiet, is dropped at the top (a
    quiet device that uploads again is noted again). Asked for an earlier time than
    before, the quiet ones dropped might count again: then it scans, as
    :func:`device_horizon` does.
    """

    def __init__(self, lateness_us: int, max_lateness_us: int,
                 current: Callable[[str], tuple[int | None, int] | None],
                 every: Callable[[], Iterable[tuple[str, tuple[int | None, int]]]]) -> None:
        self.lateness_us = lateness_us
        self.max_lateness_us = max(max_lateness_us, lateness_us)
        self._current = current
        self._every = every
        self._heap: list[tuple[int, str]] = []
        self._floor: int | None = None  # the highest floor quiet entries were dropped at

    def noted(self, device: str, t_us: int | None) -> None:
        """``device`` reported (its newest time is now ``t_us``, None: none yet)."""
        if t_us is not None:
            heapq.heappush(self._heap, (t_us, device))

    def horizon(self, now_us: int) -> int:
        floor = now_us - self.max_lateness_us
        ceiling = now_us - self.lateness_us
        if self._floor is not None and floor < self._floor:
            return device_horizon(now_us, self.lateness_us, self.max_lateness_us,
                                  (v for _, v in self._every()))
        self._floor = floor
        heap = self._heap
        while heap:
            t, device = heap[0]
            now = self._current(device)
            if now is not None and now[0] == t and now[1] > floor:
                return max(floor, min(ceiling, t))
            heapq.heappop(heap)
        return max(floor, ceiling)

    def compact(self, devices: int) -> None:
        """Rebuild the heap from the devices' own times once stale entries outnumber them."""
        if len(self._heap) > 4 * devices + 1024:
            self._heap = [(v[0], d) for d, v in self._every() if v[0] is not None]
            heapq.heapify(self._heap)


class DeviceClock:
    """Each device's newest fix time and its last upload (wall clock), for the watermark.

    Small and picklable (it travels in a checkpoint); devices silent for longer than
    ``max_lateness`` no longer count and are forgotten.
    """

    def __init__(self, lateness_us: int, max_lateness_us: int) -> None:
        self.lateness_us = lateness_us
        self.max_lateness_us = max(max_lateness_us, lateness_us)
        self.seen: dict[str, tuple[int, int]] = {}

    def note(self, device: str, t_us: int, received_us: int) -> None:
        old = self.seen.get(device)
        if old is None:
            self.seen[device] = (t_us, received_us)
        else:
            self.seen[device] = (max(old[0], t_us), max(old[1], received_us))

    def horizon(self, now_us: int) -> int:
        # list() of a dict view copies it at once: another thread may be noting meanwhile.
        seen = list(self.seen.items())
        floor = now_us - self.max_lateness_us
        if len(seen) > 64 and any(r <= floor for _, (_, r) in seen):
            self.seen = {d: v for d, v in seen if v[1] > floor}
        return device_horizon(now_us, self.lateness_us, self.max_lateness_us,
                              (v for _, v in seen))
