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

from collections.abc import Iterable

__all__ = ["DeviceClock", "device_horizon"]


def device_horizon(now_us: int, lateness_us: int, max_lateness_us: int,
                   seen: Iterable[tuple[int | None, int]]) -> int:
    """The watermark at ``now_us`` from each device's (newest time, last upload)."""
    floor = now_us - max(max_lateness_us, lateness_us)
    ceiling = now_us - lateness_us
    active = [t for t, received in seen if t is not None and received > floor]
    return max(floor, min([ceiling, *active]))


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
