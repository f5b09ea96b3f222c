"""Evidence that stands up on its own: signed anchors of the audit chain, keys, evidence packs.

Key handling lives here (and the MAC key file in ``storage/auditkeys.py``), never in the core.
"""

__all__: list[str] = []
