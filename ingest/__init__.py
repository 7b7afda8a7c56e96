"""A Kubernetes-native ingest service for Pacifica-style scientific data bundles."""
