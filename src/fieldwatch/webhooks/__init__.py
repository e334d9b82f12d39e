"""Workspace webhooks: alert changes POSTed to external URLs, signed and retried."""
