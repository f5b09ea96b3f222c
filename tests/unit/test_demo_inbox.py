"""The demo's inbox: what Apprise's json:// delivers there is kept, shown and announced."""

from __future__ import annotations

import apprise
import httpx

from coverwatch.cli.demoinbox import Received, demo_inbox


def test_a_json_notification_arrives_and_is_listed() -> None:
    heard: list[Received] = []
    with demo_inbox(heard.append) as inbox:
        sender = apprise.Apprise()
        assert sender.add(inbox.url("supervisor"))
        assert sender.notify(title="LAPSE Main Gate / armed-cover", body="Cover 0 of 2")
        assert [(m.to, m.title, m.body) for m in heard] == [
            ("supervisor", "LAPSE Main Gate / armed-cover", "Cover 0 of 2")]
        page = httpx.get(inbox.page, timeout=30).text
        assert "LAPSE Main Gate / armed-cover" in page and "supervisor" in page
        # Text from outside is shown as text, never as markup.
        httpx.post(inbox.page + "x", json={"title": "<script>x</script>"}, timeout=30)
        assert "<script>x" not in httpx.get(inbox.page, timeout=30).text
