"""The command ledger: commands and configuration pushes to devices, their delivery
and acknowledgement."""
