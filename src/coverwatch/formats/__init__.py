"""File formats in and out: site files, event files (JSONL, CSV, Parquet), plan
files and rendered post orders; what devices upload (OsmAnd, OwnTracks) and
rosters; the validation of live events (``validation``). Adapters: they read
and write files and hand the pure core plain objects."""

__all__: list[str] = []
