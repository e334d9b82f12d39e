"""Secrets out of log lines: one ``logging.Filter`` that masks credentials by their shape.

``configure_logging`` puts ``RedactSecrets`` on every handler it creates, so it sees the
records of every logger, third-party ones included (uvicorn's WebSocket handshakes,
the ``websockets`` library's headers and frames, amqtt's CONNECT packets). Masked:

- the credentials Fieldwatch issues, by their prefix: device tokens ``fwd_``, API keys
  ``fwk_``, refresh tokens ``fwr_``, provisioning keys ``fwp_`` (``fwd_***``: the kind
  stays recognisable; a display prefix, the first 12 characters the API lists keys by,
  is left alone);
- JSON Web Tokens (``eyJ***``), and whatever follows ``/ws/device/`` in a path;
- ``Authorization``/``Cookie`` header values and ``Bearer``/``Basic`` credentials;
- passwords in URLs (``postgresql://user:***@host``);
- values named like secrets: ``"password": "…"``, ``token=…``, ``secret: …`` (also the
  webhook signing secrets and MQTT passwords, which have no shape of their own).

A secret with neither a shape nor a name (a statement parameter, a packet dump) cannot
be recognised: ``configure_logging`` keeps the loggers that print those quiet instead
(``CHATTY_LOGGERS``), and the database engine hides statement parameters.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"


#: A value an earlier rule masked whole, the credential's kind left visible.
_MASKED = re.compile(r"(?i)^[\"']?(?:(?:bearer|basic)[ \t]+)?(?:fw[dkrp]_|eyJ)?\*\*\*[\"']?$")


def _masked_value(match: re.Match[str]) -> str:
    """``name: ***`` (quotes kept), unless an earlier rule masked the whole value and left
    the credential's kind visible (``"token": "fwd_***"``)."""
    value = match.group(2)
    if _MASKED.match(value):
        return match.group(0)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group(1)}{quote}{MASK}{quote}"


#: (words that must be in the lower-cased text for the rule to apply, pattern,
#: replacement), applied in this order. The words spare most lines the costlier rules.
_RULES: tuple[tuple[tuple[str, ...], re.Pattern[str], Any], ...] = (
    # Issued credentials: the prefix, then more characters than a display prefix has.
    (("fw",), re.compile(r"(fw[dkrp]_)[A-Za-z0-9_-]{9,}"), r"\1" + MASK),
    # JWTs: base64url of '{"', then optionally the payload and the signature.
    (("eyj",), re.compile(r"eyJ[A-Za-z0-9_-]{6,}(?:\.[A-Za-z0-9_-]*){0,2}"), "eyJ" + MASK),
    # Whatever follows the device WebSocket path is a token, even a malformed one.
    (
        ("/ws/device/",),
        re.compile(r"(/ws/device/+)([^\s?#\"']+)"),
        lambda m: m.group(0) if _MASKED.match(m.group(2)) else m.group(1) + MASK,
    ),
    (
        ("bearer", "basic"),
        re.compile(r"(?i)\b(bearer|basic)([ \t]+)[A-Za-z0-9._~+/=-]{6,}"),
        r"\1\2" + MASK,
    ),
    # Header values, whatever the credential's shape (``< cookie: …``).
    (
        ("authorization", "cookie", "x-api-key"),
        re.compile(
            r"(?i)(\b(?:proxy-)?authorization|\bcookie|\bset-cookie|\bx-api-key)"
            r"""(["']?[ \t]*[:=][ \t]*["']?)([^\r\n"']+)"""
        ),
        lambda m: m.group(0) if _MASKED.match(m.group(3)) else m.group(1) + m.group(2) + MASK,
    ),
    # scheme://user:password@host; not the port of ``http://host:8000/path?email=a@b``.
    (
        ("://",),
        re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/?#@]*:)(?!\d+(?:[/?#\s]|$))[^\s@]+@"),
        r"\1" + MASK + "@",
    ),
    # Named values (``new_password``, ``refresh_token`` too): JSON, Python reprs, query
    # strings, key=value.
    (
        ("password", "passwd", "secret", "token", "api_key", "api-key", "apikey"),
        re.compile(
            r"""(?i)((?:password|passwd|secret|token|api[_-]?key)["']?[ \t]*[:=][ \t]*)"""
            r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s"',;&)}\]]+)"""
        ),
        _masked_value,
    ),
)


def redact(text: str) -> str:
    """``text`` with every secret in it masked."""
    lower = text.lower()
    for words, pattern, replacement in _RULES:
        if any(word in lower for word in words):
            text = pattern.sub(replacement, text)
    return text


_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's format string, without the arguments
}


class RedactSecrets(logging.Filter):
    """Formats each record's message, masks the secrets in it and in its ``extra``
    fields, traceback and stack, and lets it through. Idempotent: a record seen by two
    handlers (or by a logger's filter and a handler's) is masked once more, harmlessly."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad format arguments: keep what there is, masked
            message = f"{record.msg} {record.args!r}"
        record.msg = redact(message)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD and not isinstance(value, bool | int | float | None):
                _mask_extra(record, name, value)
        return True


def _mask_extra(record: logging.LogRecord, name: str, value: Any) -> None:
    text = value if isinstance(value, str) else str(value)
    masked = redact(text)
    if masked != text:
        setattr(record, name, masked)
