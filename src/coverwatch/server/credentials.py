"""Device tokens already found, kept so that a phone's upload needs no query of its own.

A phone sends its token with every fix. Looking it up in the store costs a query and a
hop to a thread per request; :class:`DeviceTokens` keeps, by the token's hash, the device
it was last found for. This is never trusted alone: the upload carries the token
(:class:`~coverwatch.storage.devices.HeldToken`) into its group commit, where the
tokens of the whole group are checked in one indexed query inside the same transaction
that stores them (:mod:`coverwatch.server.groupcommit`). A revoke, a rotation or a new
officer committed by anyone before that commit refuses the upload (and the entry is
forgotten); there is no time limit to wait out. Only active devices with an officer are
kept, so every refusal (unknown token, no officer) is decided by a fresh lookup.
"""

from __future__ import annotations

from coverwatch.storage.auth import hash_token
from coverwatch.storage.devices import Device, HeldToken

__all__ = ["DeviceTokens"]


class DeviceTokens:
    """Token hash -> the device it was found for (at most ``limit``; the oldest go)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._known: dict[str, Device] = {}

    @staticmethod
    def hash(token: str) -> str:
        return hash_token(token)

    def held(self, token_hash: str) -> HeldToken | None:
        device = self._known.get(token_hash)
        return None if device is None else HeldToken(token_hash, device)

    def remember(self, token_hash: str, device: Device) -> None:
        if not device.active or device.officer is None:
            return
        if len(self._known) >= self.limit:  # bounded: forget the oldest tenth
            for old in list(self._known)[: max(1, self.limit // 10)]:
                del self._known[old]
        self._known[token_hash] = device

    def forget(self, token_hash: str) -> None:
        self._known.pop(token_hash, None)

    def __len__(self) -> int:
        return len(self._known)
