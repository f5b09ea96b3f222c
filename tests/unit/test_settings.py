"""Settings never show secrets in their repr (which can end up in logs and tracebacks)."""

from pathlib import Path

from coverwatch.settings import Settings


def test_repr_hides_secrets() -> None:
    s = Settings(Path("site.yaml"), db_url="postgresql://cw:db-pass@db/cw",
                 mqtt_url="mqtt://cw:mq-pass@broker", webhook_secret="hook-secret")
    text = repr(s)
    assert "site.yaml" in text
    for secret in ("db-pass", "mq-pass", "hook-secret"):
        assert secret not in text
