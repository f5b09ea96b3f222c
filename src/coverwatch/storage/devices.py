"""Devices: the phones and trackers that send an officer's fixes, each with its own token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from coverwatch.storage.auth import NotFoundError, hash_token, insert_unique, new_token
from coverwatch.storage.base import StoreBase
from coverwatch.storage.base import now_us as wall_clock_us
from coverwatch.storage.tables import devices

__all__ = ["Device", "DeviceRepository", "Revoked"]


@dataclass(frozen=True, slots=True)
class Device:
    id: int
    name: str
    officer: str | None
    active: bool
    created_us: int
    site: str = "default"  # the store key of the site it belongs to


@dataclass(frozen=True, slots=True)
class Revoked:
    """The outcome of revoking a device: the device, and whether it was active until now."""

    device: Device
    changed: bool



def _device(row: Any) -> Device:
    return Device(row.id, row.name, row.officer, bool(row.active), row.created_us, row.site)


class DeviceRepository(StoreBase):
    """Devices of the store's site and their tokens."""

    def create_device(
        self, name: str, officer: str | None, *, created_us: int | None = None
    ) -> tuple[Device, str]:
        """Register a device; returns it and its token (plaintext, shown this once)."""
        if not name:
            raise ValueError("device name must not be empty")
        token = new_token("device")
        stmt = (
            devices.insert()
            .values(
                name=name,
                site=self.site,
                officer=officer,
                token_hash=hash_token(token),
                active=True,
                created_us=wall_clock_us() if created_us is None else created_us,
            )
            .returning(*devices.c)
        )
        with self._write() as conn:
            row = insert_unique(conn, stmt, "device", name).one()
        return _device(row), token

    def device_for_token(self, token: str) -> Device | None:
        """The active device holding ``token``, or None."""
        with self.reading() as conn:
            row = conn.execute(
                select(devices).where(
                    devices.c.token_hash == hash_token(token), devices.c.active.is_(True)
                )
            ).first()
        return None if row is None else _device(row)

    def rotate_device_token(self, name: str) -> str:
        """Give a device a new token (the old one stops working); returns it once."""
        token = new_token("device")
        with self._write() as conn:
            done = conn.execute(
                update(devices).where(devices.c.name == name).values(token_hash=hash_token(token))
            ).rowcount
        if not done:
            raise NotFoundError(f"no device named {name!r}")
        return token

    def set_device_officer(self, name: str, officer: str | None) -> Device:
        with self._write() as conn:
            row = conn.execute(
                update(devices)
                .where(devices.c.name == name)
                .values(officer=officer)
                .returning(*devices.c)
            ).first()
        if row is None:
            raise NotFoundError(f"no device named {name!r}")
        return _device(row)

    def deactivate_device(self, name: str) -> Revoked:
        """Revoke a device's token; ``changed`` is False if it was already revoked."""
        with self._write() as conn:
            row = conn.execute(
                update(devices).where(devices.c.name == name, devices.c.active.is_(True))
                .values(active=False).returning(*devices.c)
            ).first()  # fmt: skip
            if row is not None:
                return Revoked(_device(row), True)
            row = conn.execute(select(devices).where(devices.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no device named {name!r}")
        return Revoked(_device(row), False)

    def list_devices(self) -> list[Device]:
        with self.reading() as conn:
            return [_device(r) for r in conn.execute(select(devices).order_by(devices.c.name))]
