"""The store is the composition of its repositories: every public method of
``Store`` comes from exactly one repository class, each in its own module of
``coverwatch.storage``, so a module can depend on the one repository it needs."""

from __future__ import annotations

import inspect

import coverwatch.storage as storage
from coverwatch.storage import Store
from coverwatch.storage.base import StoreBase

REPOSITORIES = [c for c in Store.__mro__[1:] if c.__name__.endswith("Repository")]
# Methods of the composition itself, not of any one concern.
OWN = {"schema_revision", "for_site"}


def _public_methods(cls: type) -> set[str]:
    return {name for name, value in vars(cls).items()
            if not name.startswith("_") and callable(value)}


def test_every_repository_is_a_store_base_in_its_own_module() -> None:
    assert len(REPOSITORIES) >= 10
    modules = [c.__module__ for c in REPOSITORIES]
    assert len(set(modules)) == len(modules), modules
    for cls in REPOSITORIES:
        assert issubclass(cls, StoreBase), cls
        assert cls.__module__.startswith("coverwatch.storage."), cls
        assert getattr(storage, cls.__name__) is cls, f"{cls.__name__} is not exported"


def test_each_public_method_of_the_store_comes_from_exactly_one_repository() -> None:
    owners: dict[str, list[str]] = {}
    for cls in REPOSITORIES:
        for name in _public_methods(cls):
            owners.setdefault(name, []).append(cls.__name__)
    shared = {name: where for name, where in owners.items() if len(where) > 1}
    assert not shared, f"defined by more than one repository: {shared}"
    assert _public_methods(Store) == OWN
    store_methods = {name for name, value in inspect.getmembers(Store)
                     if not name.startswith("_") and inspect.isfunction(value)}
    # What every repository shares: the engine's connections (StoreBase).
    assert store_methods - OWN - _public_methods(StoreBase) == set(owners)
