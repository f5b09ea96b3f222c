"""Incidents kept in the store (issue 21): a flood's grouping, its members and the levels
told survive a restart, on SQLite and PostgreSQL, apart per site."""

from __future__ import annotations

import pytest

from coverwatch.domain.incidents import Incident, IncidentBook
from coverwatch.storage import Store

__all__: list[str] = []


def _incident(n: int = 3) -> Incident:
    return Incident("incident-lapse-000", 1_000, "outage",
                    [f"lapse-{i:03d}" for i in range(n)], [f"p{i:02d}" for i in range(n)],
                    {0}, 2_000)


def test_an_incident_round_trips_and_is_replaced_by_id(store: Store) -> None:
    inc = _incident()
    store.save_incidents([inc.to_record()])
    inc.members.append("lapse-099")
    inc.told.add(1)
    store.save_incidents([inc.to_record()])  # a member joined, level 2 told: one row
    (record,) = store.load_incidents()
    again = Incident.from_record(record)
    assert again == inc
    book = IncidentBook()
    book.restore([again])
    assert book.incident_of("lapse-099") is again and book.incidents() == [again]
    assert store.for_site("elsewhere").load_incidents() == []


@pytest.mark.parametrize(("field", "value", "words"), [
    ("cause", "storm", "cause 'storm'"), ("members", "lapse-1", "members"),
    ("told", [0.5], "told"), ("started", "0", "started"), ("id", "", "id")])
def test_a_bad_record_names_its_field(field: str, value: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Incident.from_record(_incident().to_record() | {field: value})
