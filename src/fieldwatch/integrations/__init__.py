"""Vendor-cloud connectors (health wearables): connections, OAuth, sync runs and their
history, normalisation of the vendors' data into the telemetry store."""
