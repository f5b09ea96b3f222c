"""The MQTT client id: stable across restarts of one deployment, distinct between two
deployments of one site on one broker (they used to share ``coverwatch-<site>``)."""

from __future__ import annotations

from pathlib import Path

from coverwatch.server.mqtt import client_id


def test_client_id_is_stable_per_data_dir_and_unique_between_deployments(tmp_path: Path) -> None:
    first = client_id("harbour-yard", tmp_path / "a")
    assert first == client_id("harbour-yard", tmp_path / "a")  # a restart keeps the session
    second = client_id("harbour-yard", tmp_path / "b")
    assert first != second
    assert first.startswith("coverwatch-harbour-yard-")
    assert (tmp_path / "a" / "node-id").read_text().strip() in first


def test_a_damaged_node_id_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "node-id").write_text("not ok!\n")
    made = client_id("s", tmp_path)
    assert made == client_id("s", tmp_path)
    assert "not ok" not in made
