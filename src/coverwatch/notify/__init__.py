"""Notification: how escalation steps leave the server (Apprise URLs and signed
webhooks)."""

__all__: list[str] = []
