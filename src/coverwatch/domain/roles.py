"""The roles a person may hold, and those an API token may hold: the one list of
each, for access control, storage and the site file's escalation targets (a bare
name in ``notify`` that is a role means that role, otherwise a user).
"""

from __future__ import annotations

__all__ = ["ROLES", "TOKEN_ROLES"]

# Roles a person (user) may hold.
# "approver": a senior rank who may authorise a site change that weakens cover.
ROLES = ("officer", "supervisor", "admin", "auditor", "approver")
# Roles an API token may hold: a person's roles, plus "ingest" for systems that
# only send events (gate sensors, CAD bridges) and never log in.
TOKEN_ROLES = (*ROLES, "ingest")
