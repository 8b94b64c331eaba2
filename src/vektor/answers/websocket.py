"""/chat/ws: the chat over one WebSocket, both ways, for any number of answers at once
(SPEC §3.8). The socket signs in with its first frame; `SocketSession` serves the rest."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, WebSocket
from starlette.types import Message

from vektor.answers.socket_frames import CLOSE_AUTH, CLOSE_TOO_BIG, CLOSE_UNAVAILABLE
from vektor.answers.socket_session import SocketSession
from vektor.answers.socket_watch import Credential
from vektor.apikeys.service import looks_like_api_key
from vektor.core.access import who_may_call
from vektor.core.config import WS_MAX_FRAME_BYTES
from vektor.core.database import is_database_down
from vektor.core.errors import AppError
from vektor.core.security import TokenError, decode_access_token, hash_token
from vektor.state import AppState, app_state

router = APIRouter(prefix="/chat", tags=["chat"])

# Query parameters that look like a credential: refused outright, never read (URLs are
# logged by proxies and kept in browser history).
TOKEN_PARAMETERS = frozenset({"token", "access_token", "api_key", "key", "authorization"})


class SignInRefused(Exception):
    """The socket closes with `code` before it is signed in."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@router.websocket("/ws")
@who_may_call("user or API key")
async def chat_socket(websocket: WebSocket) -> None:
    """Chat frames both ways: chat, cancel, resume, subscribe, ping (SPEC §3.8)."""
    state = app_state(websocket)
    await websocket.accept()
    try:
        credential = await sign_in(websocket, state)
    except SignInRefused as refusal:
        with contextlib.suppress(Exception):
            await websocket.close(refusal.code, refusal.reason)
        return
    if credential is None:
        return  # the client left before signing in
    session = SocketSession(websocket, state, credential.user_id, credential.key_id)
    watched = state.sockets.watch(credential, lambda: session.end(CLOSE_AUTH, "Session revoked"))
    try:
        await session.run()
    finally:
        state.sockets.unwatch(watched)


async def sign_in(websocket: WebSocket, state: AppState) -> Credential | None:
    """The credential of the socket's first frame, `{"type": "auth", "token": …}`, sent
    within WS_AUTH_TIMEOUT_SECONDS; None if the client leaves first."""
    if TOKEN_PARAMETERS & {name.lower() for name in websocket.query_params}:
        raise SignInRefused(CLOSE_AUTH, "A token in the query string is not accepted")
    try:
        async with asyncio.timeout(state.settings.ws_auth_timeout_seconds):
            message = await websocket.receive()
    except TimeoutError:
        raise SignInRefused(CLOSE_AUTH, "No auth frame in time") from None
    if message["type"] == "websocket.disconnect":
        return None
    token = _auth_token(message)
    try:
        credential = await identify(state, token) if token else None
    except Exception as exc:
        if isinstance(exc, AppError) or is_database_down(exc):
            raise SignInRefused(CLOSE_UNAVAILABLE, "Service unavailable") from exc
        raise
    if credential is None:
        raise SignInRefused(CLOSE_AUTH, "Invalid, expired or revoked token")
    return credential


def _auth_token(message: Message) -> str | None:
    """The token of an auth frame; None if the frame is anything else."""
    text = message.get("text")
    if text is None:
        return None
    if len(text) > WS_MAX_FRAME_BYTES // 4 and len(text.encode()) > WS_MAX_FRAME_BYTES:
        raise SignInRefused(CLOSE_TOO_BIG, "Frame too big")
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(frame, dict) or frame.get("type") != "auth":
        return None
    token = frame.get("token")
    return token if isinstance(token, str) and 0 < len(token) <= 4096 else None


async def identify(state: AppState, token: str) -> Credential | None:
    """Who an access token (its session live) or an API key (live) belongs to."""
    now = datetime.now(UTC)
    if looks_like_api_key(token):
        found = await state.live_keys.owner(token, now)
        if found is None:
            return None
        return Credential(found[0], key_hash=hash_token(token), key_id=found[1])
    settings = state.settings
    try:
        claims = decode_access_token(
            token,
            secret_key=settings.secret_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    except TokenError:
        return None
    if not await state.live_sessions.live(
        claims.session_id, claims.user_id, now, claims.expires_at
    ):
        return None
    return Credential(claims.user_id, session_id=claims.session_id)
