"""Devices: the phones and trackers that send an officer's fixes, each with its own token."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from coverwatch.errors import StoreError
from coverwatch.storage.auth import NotFoundError, hash_token, insert_unique, new_token
from coverwatch.storage.base import StoreBase
from coverwatch.storage.base import now_us as wall_clock_us
from coverwatch.storage.tables import devices

__all__ = ["CredentialsChanged", "Device", "DeviceRepository", "HeldToken", "Revoked",
           "stale_tokens"]


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



@dataclass(frozen=True, slots=True)
class HeldToken:
    """A device token as the server last found it: checked again inside the commit that
    stores the upload (:func:`stale_tokens`), so a revoke committed anywhere takes effect."""

    token_hash: str
    device: Device


class CredentialsChanged(StoreError):
    """Device tokens no longer held as they were (revoked, rotated, reassigned): nothing
    of the commit was stored."""

    def __init__(self, stale: set[str]) -> None:
        super().__init__(f"{len(stale)} device token(s) revoked or changed since looked up")
        self.stale = stale


def stale_tokens(conn: Connection, held: Mapping[str, Device]) -> set[str]:
    """Of ``held`` (token hash -> the device it was found for), the hashes no longer held
    by that active device with that officer and site: one indexed query, run inside the
    write transaction that stores their uploads."""
    # On the driver's cursor: once per commit group, where building, caching and
    # compiling the Core statement cost more than the indexed lookup itself.
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = ("SELECT token_hash, name, officer, site FROM devices WHERE active = "
           f"{mark} AND token_hash IN ({', '.join([mark] * len(held))})")
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        found = {row[0]: tuple(row[1:]) for row in
                 cursor.execute(sql, (True, *held)).fetchall()}
    finally:
        cursor.close()
    return {token_hash for token_hash, device in held.items()
            if found.get(token_hash) != (device.name, device.officer, device.site)}


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
