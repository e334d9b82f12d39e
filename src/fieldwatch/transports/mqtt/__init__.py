"""MQTT transport: the broker connection, topics and device access control."""
