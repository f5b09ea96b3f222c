"""The running server: per-site services (live engine, alerts, briefing), ingest
from HTTP and MQTT, and site changes. Entrypoints (``api/``, ``web/``, ``cli/``)
call into it; ``bootstrap.create_app()`` wires it."""
