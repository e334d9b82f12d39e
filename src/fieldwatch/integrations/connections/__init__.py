"""Connections to vendor clouds: authorising one (OAuth), listing, disconnecting, and
the tokens a sync uses (refreshed one at a time per connection, across processes)."""
