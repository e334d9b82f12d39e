"""Fieldwatch: an open-source IoT fleet platform."""

__version__ = "0.1.0"
