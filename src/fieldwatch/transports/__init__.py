"""Device-facing edges: they turn bytes into typed device messages and call the same
services as the HTTP API. Domains never import from here."""
