"""Command-line tools: `IngestCMD` for operators (admin.py), `ingest` for scientists (client.py and the modules it uses)."""
