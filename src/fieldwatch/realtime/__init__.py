"""Socket.IO push to dashboards: live telemetry, presence, status changes and alerts.

Clients connect to ``/ws/monitoring`` (Socket.IO path ``ws/monitoring``) with a JWT
access token or an API key and receive their workspace's events as they happen.
"""

from fieldwatch.realtime.server import SOCKETIO_PATH, RealtimeServer

__all__ = ["SOCKETIO_PATH", "RealtimeServer"]
