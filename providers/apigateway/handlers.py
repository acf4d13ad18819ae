"""The WebSocket API's Lambda handlers under the path earlier releases' serverless.yml names
(`providers.apigateway.handlers.connect`, ...): deployments that still name it keep working.
The handlers live in the shell, app/lambda_websocket.py; new deployments name that."""

from app.lambda_websocket import connect, disconnect, fanout, handshake, message

__all__ = ["connect", "disconnect", "fanout", "handshake", "message"]
