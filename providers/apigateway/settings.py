"""The apigateway provider's settings, from `APIGW_*` variables (serverless.yml sets them)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field

from core.envsettings import EnvSettings

# API Gateway's own limits (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html).
MAX_MESSAGE_BYTES = 128 * 1024  # one @connections post, and one client message
MAX_FRAME_BYTES = 32 * 1024  # one WebSocket frame from a client
IDLE_TIMEOUT_SECONDS = 10 * 60
CONNECTION_LIMIT_SECONDS = 2 * 3600


class ApiGatewaySettings(EnvSettings):
    """Where the tables, the queue and the management API are, and how to fan out."""

    env_prefix = "APIGW_"

    # Tables `<prefix>-connections`, `-subscriptions`, `-presence`; queue `<prefix>-fanout`.
    table_prefix: str = Field(default="realtime-relay-dev", pattern=r"^[A-Za-z0-9_.-]{3,200}$")
    fanout_queue: str | None = None  # a queue name or URL; default `<prefix>-fanout`

    # The management API: APIGW_ENDPOINT (serverless-offline, custom domains), else built from
    # the API id, the stage and the region.
    endpoint: str | None = Field(default=None, pattern=r"^https?://[^/?#]+(/[^?#]*)?$")
    api_id: str | None = None
    stage: str | None = None
    region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("APIGW_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )

    # Fan-out: posts in flight per invocation, attempts per post, and the subscriber count one
    # invocation serves before the rest goes to SQS slices.
    fanout_concurrency: int = Field(default=32, ge=1, le=512)
    fanout_slice: int = Field(default=1000, ge=1, le=10_000)
    post_attempts: int = Field(default=3, ge=1, le=10)
    post_timeout_seconds: float = Field(default=5.0, gt=0, le=29)

    # The handshake: $connect invokes this function asynchronously (InvocationType=Event); it
    # posts pusher:connection_established as soon as API Gateway accepts posts.
    handshake_function: str | None = None
    handshake_wait_seconds: float = Field(default=10.0, gt=0, le=60)

    # pusher-js pings after this much silence; below API Gateway's 10-minute idle timeout.
    activity_timeout_seconds: int = Field(default=120, ge=10, le=IDLE_TIMEOUT_SECONDS - 60)
    # Rows outlive API Gateway's 2-hour connection limit by a margin, then TTL removes them.
    row_ttl_seconds: int = Field(default=CONNECTION_LIMIT_SECONDS + 600, ge=60)
    max_payload_bytes: int = Field(default=10_240, ge=1024, le=MAX_MESSAGE_BYTES - 1024)
    client_events_per_second: int = Field(default=10, ge=1, le=1000)  # Pusher's is 10
    allow_anonymous: bool = False  # connections without ?token= (public channels only)

    def table(self, kind: Literal["connections", "subscriptions", "presence"]) -> str:
        """The name of one of the three tables."""
        return f"{self.table_prefix}-{kind}"

    @property
    def queue(self) -> str:
        """The fan-out queue's name or URL."""
        return self.fanout_queue or f"{self.table_prefix}-fanout"

    @property
    def management_endpoint(self) -> str | None:
        """`https://{api}.execute-api.{region}.amazonaws.com/{stage}`, or APIGW_ENDPOINT."""
        if self.endpoint:
            return self.endpoint.rstrip("/")
        if self.api_id and self.stage:
            return f"https://{self.api_id}.execute-api.{self.region}.amazonaws.com/{self.stage}"
        return None
