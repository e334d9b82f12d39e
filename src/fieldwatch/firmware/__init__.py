"""Firmware: artifacts and their signatures, per-device updates (commands in the
ledger with their own sub-states), and rollouts in waves."""
