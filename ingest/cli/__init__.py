"""Command-line tools: `IngestCMD` for operators (admin.py), `ingest` for scientists (client.py and its modules)."""
