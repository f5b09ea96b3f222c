"""The running server: one unit per site (``unit.SiteUnit``: its state), the handlers
that change it (``handlers/``: ingest, tick, alerts, site, start-up), the adapters that
subscribe to what they did (outbox, briefing, tours, the live feed), MQTT and the
distributed mode. Entrypoints (``api/``, ``web/``, ``cli/``) call into it;
``bootstrap.create_app()`` wires it."""

__all__: list[str] = []
