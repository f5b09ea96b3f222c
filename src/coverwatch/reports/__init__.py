"""Reports and analysis over stored or given events: replay, lapse reports
recomputed from history, plan checks and their pictures."""

__all__: list[str] = []
