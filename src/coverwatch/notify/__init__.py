"""Notification: how escalation steps leave the server (Apprise URLs and signed
webhooks)."""
