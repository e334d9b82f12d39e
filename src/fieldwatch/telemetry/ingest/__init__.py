"""Ingestion: decoding what devices send, the one entry point, and the group-commit writer."""
