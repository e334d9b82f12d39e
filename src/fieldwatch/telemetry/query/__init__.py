"""Reading telemetry back: pages of readings, aggregates over calendar buckets, latest values."""
