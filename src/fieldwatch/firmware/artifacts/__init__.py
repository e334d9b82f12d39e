"""Firmware artifacts: their bytes (a content-addressed blob store), signing keys and
the workspace's signing policy, the artifacts API and the downloads devices make."""
