"""Local stand-ins of the vendors' clouds (their documented OAuth and data endpoints),
served on loopback so the connectors are tested without the internet, with faults that a
test scripts: 500s, 429s with Retry-After, timeouts, revoked grants, rotated tokens."""
