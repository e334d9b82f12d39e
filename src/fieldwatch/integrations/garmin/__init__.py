"""Garmin Health API's callbacks: pushed summaries, pings to pull, deregistrations."""
