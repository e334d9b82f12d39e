"""The seed's device registration shape: a device with vendor credentials and sync settings."""
