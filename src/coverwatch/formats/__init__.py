"""File formats in and out: site files, event files (JSONL, CSV, Parquet), plan
files and rendered post orders. Adapters: they read and write files and hand the
pure core plain objects."""
