"""The device WebSocket gateway: ``WS /ws/device/{token}`` and ``WS /ws/device`` with
``Authorization: Bearer <token>``. The protocol is in docs/device-protocol.md.

Each JSON frame is decoded into a ``DeviceFrame``; its readings go to the same entry
point as those of the HTTP device API and MQTT (``TelemetryService.ingest``), and are
acked only after they are committed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, WebSocket
from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocketDisconnect

from fieldwatch.commands.messages import ConfigApplied, parse_report
from fieldwatch.core.clock import utcnow
from fieldwatch.core.redact import RedactSecrets
from fieldwatch.db.faults import RETRY_AFTER_S, outages
from fieldwatch.devices.provisioning import server_config
from fieldwatch.firmware.updates.messages import STATE_FRAME, parse_state, version_in
from fieldwatch.telemetry.errors import ReadingsRefused, UnknownDevice
from fieldwatch.telemetry.ingest.parse import decode_json, device_message
from fieldwatch.telemetry.ingest.service import Incoming, Kind
from fieldwatch.telemetry.ingest.writer import Overloaded
from fieldwatch.transports.edge import DeviceEdge, Ids
from fieldwatch.transports.sessions import (
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_REVOKED,
    CLOSE_SERVER_RESTART,
    CLOSE_TRY_AGAIN,
    DeviceSession,
    DeviceSocket,
    ErrorWindow,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["device gateway"])

#: Frames that carry readings, and what kind ingestion sees in each.
DATA_TYPES: dict[str, Kind] = {"telemetry": "data", "heartbeat": "heartbeat", "status": "status"}
LEDGER_TYPES = {"command_ack", "command_result", "config_applied", STATE_FRAME}
ENVELOPE = ("type", "id")


@dataclass(frozen=True, slots=True)
class DeviceFrame:
    """One decoded frame: its type, its optional id, and the rest."""

    type: str
    id: Any
    body: dict[str, Any]


class FrameError(Exception):
    def __init__(self, code: str, message: str, *, ref: Any = None, bad: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.bad = bad  # counts towards the bad-frame limit
        self.extra: dict[str, Any] = {}


def decode(raw: str | bytes, max_bytes: int) -> DeviceFrame:
    size = len(raw.encode()) if isinstance(raw, str) else len(raw)
    if size > max_bytes:
        raise FrameError("too_large", f"Frames are at most {max_bytes} bytes.")
    try:
        data = decode_json(raw)
    except ValueError as exc:
        raise FrameError("bad_json", str(exc)) from exc
    if not isinstance(data, dict):
        raise FrameError("bad_json", "A frame is a JSON object with a 'type' field.")
    kind, ref = data.get("type"), data.get("id")
    if not isinstance(kind, str) or (kind not in DATA_TYPES and kind not in LEDGER_TYPES):
        raise FrameError("unknown_type", f"Unknown frame type {str(kind)[:40]!r}.", ref=ref)
    body = {k: v for k, v in data.items() if k not in ENVELOPE}
    return DeviceFrame(kind, ref, body)


PATH = "/ws/device"


def device_token(path: str, authorization: str) -> str | None:
    """The device token of a handshake: the last path segment of ``/ws/device/{token}``,
    or the ``Authorization: Bearer`` token of ``/ws/device``; None when the path is not
    the gateway's (on both the API's port and the device listener)."""
    if path == PATH:
        scheme, _, token = authorization.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""
    if path.startswith(PATH + "/"):
        return path[len(PATH) + 1 :]
    return None


def bearer_token(websocket: WebSocket) -> str:
    return device_token(PATH, websocket.headers.get("authorization", "")) or ""


@router.websocket("/ws/device/{token}")
async def device_socket_with_path_token(websocket: WebSocket, token: str) -> None:
    """For firmware that cannot set headers: the token is the last path segment."""
    await serve(websocket, token)


@router.websocket("/ws/device")
async def device_socket(websocket: WebSocket) -> None:
    await serve(websocket, bearer_token(websocket))


async def serve(websocket: WebSocket, token: str) -> None:
    edge: DeviceEdge = websocket.app.state.edge
    try:
        ids = await edge.authenticate(token)
    except Exception as exc:
        if not outages.record(exc, "device WebSocket handshake"):
            raise
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        await websocket.send_denial_response(PlainTextResponse("Unavailable", 503, headers))
        return
    if ids is None:
        await websocket.close(code=CLOSE_POLICY)  # before accept: an HTTP 403
        return
    await websocket.accept()
    await run_session(edge, websocket, ids, token)


async def run_session(edge: DeviceEdge, websocket: DeviceSocket, ids: Ids, token: str) -> None:
    """An authenticated device's session, from the welcome frame to the goodbye: the
    same on the main port and on the device listener (``transports.ws_listener``)."""
    workspace_id, device_id = ids
    session = DeviceSession(websocket, device_id, workspace_id, token)
    registry = edge.sessions
    await registry.register(session)
    log.info("device %s connected over WebSocket", device_id)
    try:
        await edge.presence.seen(workspace_id, [device_id], reason="websocket")
        await session.send(
            {
                "type": "welcome",
                "device_id": str(device_id),
                "server_time": utcnow().isoformat(),
                "server_config": server_config(edge.settings).model_dump(),
            }
        )
        await edge.commands.attach(device_id, session)  # what waited for it, in order
        await receive_loop(edge, session)
    except WebSocketDisconnect:
        pass
    except Exception as exc:
        if outages.record(exc, "device WebSocket session"):  # it reconnects later
            await session.close(CLOSE_TRY_AGAIN, "try again later")
        else:
            log.exception("device %s: WebSocket session failed", device_id)
            await session.close(CLOSE_INTERNAL, "internal error")
    finally:
        session.closed = True
        edge.commands.detach(device_id, session)
        if registry.unregister(session) and session.close_code != CLOSE_SERVER_RESTART:
            await edge.presence.gone(workspace_id, device_id, reason="websocket closed")
        log.info("device %s disconnected (code %s)", device_id, session.close_code)


async def receive_loop(edge: DeviceEdge, session: DeviceSession) -> None:
    settings, limits = edge.settings, edge.limits
    errors = ErrorWindow()
    while not session.closed:
        message = await session.websocket.receive()
        if message["type"] == "websocket.disconnect":
            # 1012: this server is shutting down and closed the connection itself. The
            # device is not marked offline for that: it reconnects to the next server,
            # and if it does not, the presence sweep notices its silence as usual (a
            # restart must not flood the connection history or raise offline alerts).
            session.close_code = message.get("code")
            return
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        try:
            refusal = await limits.check("websocket", session.workspace_id, session.device_id)
            if refusal is not None:
                error = FrameError("rate_limited", refusal.message)
                error.extra["retry_after"] = round(refusal.retry_after, 3)
                raise error
            frame = decode(raw, settings.ws_max_frame_bytes)
            try:
                reply = await handle(edge, session, frame)
            except Exception as exc:
                unavailable = unavailable_frame(exc, frame.id)
                if unavailable is None:
                    raise
                raise unavailable from exc
        except FrameError as exc:
            if exc.bad and errors.add() > settings.ws_max_errors:
                log.info("device %s: too many bad frames, disconnecting", session.device_id)
                limits.disconnected("websocket")
                await session.close(CLOSE_POLICY, "too many bad frames")
                return
            reply = {"type": "error", "code": exc.code, "message": exc.message, **exc.extra}
            if exc.ref is not None:
                reply["ref"] = exc.ref
        if reply is not None:
            await session.send(reply)


def unavailable_frame(exc: Exception, ref: Any) -> FrameError | None:
    """While the database is unavailable a frame answers an ``unavailable`` error frame
    (nothing was stored, so no ack: the device resends later) and the session stays.
    ``None`` for any other failure."""
    if isinstance(exc, FrameError) or not outages.record(exc, "device WebSocket frame"):
        return None
    error = FrameError(
        "unavailable", "The server cannot store data right now; resend later.", ref=ref, bad=False
    )
    error.extra["retry_after"] = RETRY_AFTER_S
    return error


async def handle(
    edge: DeviceEdge, session: DeviceSession, frame: DeviceFrame
) -> dict[str, Any] | None:
    if frame.type == STATE_FRAME:
        return await handle_firmware_state(edge, session, frame)
    if frame.type in LEDGER_TYPES:
        return await handle_ledger(edge, session, frame)
    workspace_id, device_id = session.workspace_id, session.device_id
    try:
        batch = device_message(frame.type, frame.body, device_id, utcnow())
    except ValueError as exc:
        raise FrameError("invalid", str(exc), ref=frame.id) from exc
    if frame.type == "telemetry" and batch.total == 0:
        raise FrameError("invalid", "A telemetry frame holds at least one reading.", ref=frame.id)
    incoming = Incoming(
        workspace_id, batch, "websocket", DATA_TYPES[frame.type], device_id=device_id
    )
    try:
        result = await edge.ingest.ingest(incoming)
    except (UnknownDevice, ReadingsRefused):  # gone, or retired: see the ingestion rules
        await session.close(CLOSE_REVOKED, "credentials revoked")
        return None
    except Overloaded as exc:
        error = FrameError(
            "overloaded", "The server is busy; resend later.", ref=frame.id, bad=False
        )
        error.extra["retry_after"] = exc.retry_after
        raise error from exc
    if frame.type != "telemetry" and (version := version_in(frame.body)) is not None:
        await edge.firmware.version_reported(device_id, version)
    return {"type": "ack", "ref": frame.id, **result.body()}


async def handle_firmware_state(
    edge: DeviceEdge, session: DeviceSession, frame: DeviceFrame
) -> dict[str, Any]:
    """``firmware_state``: how far a firmware update got; acked after commit."""
    try:
        report = parse_state(frame.body)
    except ValueError as exc:
        raise FrameError("invalid", str(exc), ref=frame.id) from None
    update = await edge.firmware.report(session.device_id, report)
    if update is None:
        raise FrameError(
            "unknown_update", f"No firmware update {report.update_id} for this device.",
            ref=frame.id, bad=False,
        )  # fmt: skip
    return {
        "type": "ack", "ref": frame.id, "update_id": str(update.command_id),
        "state": update.state, "tries": update.tries,
    }  # fmt: skip


async def handle_ledger(
    edge: DeviceEdge, session: DeviceSession, frame: DeviceFrame
) -> dict[str, Any]:
    """``command_ack``, ``command_result`` and ``config_applied`` frames."""
    try:
        report = parse_report(frame.type, frame.body)
    except ValueError as exc:
        raise FrameError("invalid", str(exc), ref=frame.id) from None
    async with edge.uow() as uow:
        command = await edge.commands.record(uow, session.device_id, report)
        await uow.commit()
    reply: dict[str, Any] = {"type": "ack", "ref": frame.id}
    if isinstance(report, ConfigApplied):
        return {**reply, "version": report.version}
    if command is None:
        raise FrameError(
            "unknown_command", f"No command {report.command_id} for this device.", ref=frame.id
        )
    return {**reply, "command_id": str(report.command_id), "status": command.status}


class DeviceSocketsFirst:
    """ASGI: device WebSockets go straight to the gateway's ``serve``, past middleware
    and routing; everything else to ``app``. An idle device then holds only the
    gateway's own frames, not the whole stack's (bench/bench_devices.py measured about
    37 KiB per idle connection through the stack and 23 KiB this way)."""

    def __init__(self, app: Any, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        token = None
        if scope["type"] == "websocket":
            headers = dict(scope.get("headers") or [])
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            token = device_token(scope.get("path", ""), authorization)
        if token is None:
            await self.app(scope, receive, send)
            return
        scope["app"] = self.fastapi_app  # WebSocket.app.state.edge
        await serve(WebSocket(scope, receive, send), token)


def install(app: FastAPI) -> None:
    """Serve the gateway on ``app``. ``configure_logging`` masks secrets in every record;
    the loggers that carry device tokens (uvicorn's handshake lines, the access log) mask
    them too, for an application embedded under another logging set-up."""
    app.include_router(router)
    for name in ("uvicorn.error", "uvicorn.access", "fieldwatch.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
