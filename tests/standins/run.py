"""Serve one of the test suite's stand-in vendor clouds on a port of this machine, to try
the health-data connectors without an account at the vendor (``make standin``).

The stand-in is the one the tests use: OAuth 2 with PKCE (its consent step approves at
once, as the user ``user-1``), refresh tokens, the vendor's data endpoints with its
pagination, generated data for any dates asked. It prints the settings that point
Fieldwatch at it; start Fieldwatch with them in its environment, then connect the vendor
in the console's Integrations page.

Usage: python tests/standins/run.py VENDOR [--port PORT] [--env-file FILE]
(VENDOR: oura, withings, google_health, garmin)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from standins.garmin import Garmin, garmin_app
from standins.google_health import KEYSET_PATH, GoogleHealth, google_health_app
from standins.oura import Oura, oura_app
from standins.vendor import Vendor
from standins.withings import Withings, withings_app

CLIENT_ID = "standin-client"
CLIENT_SECRET = "standin-secret-0123456789"

#: Each vendor: its state, its app, and whether its token endpoint and public keys are
#: settings of their own (Google keeps them on another host than the API).
VENDORS: dict[str, tuple[type[Vendor], Callable[[Any], Any], bool]] = {
    "oura": (Oura, oura_app, False),
    "withings": (Withings, withings_app, False),
    "google_health": (GoogleHealth, google_health_app, True),
    "garmin": (Garmin, garmin_app, False),
}


def settings_for(name: str, base: str, own_token_host: bool) -> dict[str, str]:
    """The environment that points Fieldwatch's connector ``name`` at ``base``."""
    prefix = f"FIELDWATCH_{name.upper()}__"
    env = {
        f"{prefix}CLIENT_ID": CLIENT_ID,
        f"{prefix}CLIENT_SECRET": CLIENT_SECRET,
        f"{prefix}AUTH_URL": base,
        f"{prefix}API_URL": base,
    }
    if own_token_host:
        env[f"{prefix}TOKEN_URL"] = base
        env[f"{prefix}WEBHOOK_KEYSET_URL"] = f"{base}{KEYSET_PATH}"
    return env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("vendor", choices=sorted(VENDORS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8801)
    parser.add_argument("--env-file", type=Path, help="also write the settings here")
    args = parser.parse_args(argv)
    kind, make_app, own_token_host = VENDORS[args.vendor]
    vendor = kind(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    base = f"http://{args.host}:{args.port}"
    if isinstance(vendor, Garmin):
        vendor.base_url = base  # its pings name pull addresses on itself
    lines = [f"export {k}={v}" for k, v in settings_for(args.vendor, base, own_token_host).items()]
    if args.env_file:
        args.env_file.write_text("\n".join(lines) + "\n")
    print(f"{args.vendor} stand-in on {base}; start Fieldwatch with:", *lines, sep="\n  ")
    print("then connect it on the console's Integrations page (Ctrl+C stops the stand-in)")
    sys.stdout.flush()
    uvicorn.run(make_app(vendor), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
