"""Firmware rollouts: an artifact released to a target of devices in waves (a canary
first), at a capped rate, within a window, stopped automatically by failures."""
