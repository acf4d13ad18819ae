"""The `relay` command: serve, publish, token, policy explain, check, webhooks test."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from app import logs
from core.errors import ConfigurationError, NotSupported, ProviderError, RelayError
from core.settings import Settings, load_settings, warn_about_dev_defaults
from providers.registry import load_settings_with_provider

if TYPE_CHECKING:
    from collections.abc import Sequence

    from app.relay import Relay


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from app import serving, workers
    from app.main import create_app

    host = args.host or settings.host
    port = args.port or settings.port
    count = workers.worker_count(args.workers)
    workers.check_shared(settings, count)
    warn_about_dev_defaults(settings)
    if count > 1:
        for line in banner(settings, host, port):
            print(f"relay: {line}", flush=True)
        backlog = serving.backlog(settings)
        return workers.run(settings, host=host, port=port, workers=count, backlog=backlog)
    settings = serving.fit_to_descriptors(settings)
    app = create_app(settings, metrics=settings.metrics)
    for line in banner(settings, host, port):
        print(f"relay: {line}", flush=True)
    config = serving.build_config(app, settings, host=host, port=port, relay=app.state.relay)
    provider = app.state.relay.provider
    serving.RelayServer(config, provider=provider, drain_seconds=settings.drain_seconds).run()
    return 0


def pusher_js_options(host: str, port: int) -> str:
    """The pusher-js options for the local relay over plain ws (the README shows the same)."""
    # pusher-js insists on a cluster, unused with wsHost; only 'ws', or it falls back to
    # wss://host:443 while the relay is down.
    host = "127.0.0.1" if host == "0.0.0.0" else host  # noqa: S104 - a client on this machine
    return (
        f"cluster: 'local', wsHost: '{host}', wsPort: {port}, forceTLS: false, "
        "enabledTransports: ['ws']"
    )


def banner(settings: Settings, host: str, port: int) -> list[str]:
    """What `relay serve` prints on start: where it listens and, for local, how to connect."""
    served = f"provider {settings.provider!r}"
    if settings.secondary_provider is not None:
        served += f" with {settings.secondary_provider!r} ({settings.secondary_mode})"
    lines = [f"serving {served} on http://{host}:{port}"]
    if "local" in settings.providers:
        options = pusher_js_options(host, port)
        lines.append(f"pusher-js: new Pusher('{settings.app_key}', {{ {options} }})")
    return lines


def _data_argument(text: str, *, raw: bool) -> Any:
    """DATA as the JSON value it spells, or (`raw`) the text itself as a string."""
    if raw:
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(
            f"DATA is not valid JSON ({exc}); quote a string as JSON ('\"hello\"'), "
            "or send the text as it is with --raw"
        ) from None


def _publish(settings: Settings, args: argparse.Namespace) -> int:
    url = (args.url or f"http://{settings.host}:{settings.port}").rstrip("/") + "/v1/events"
    body: dict[str, Any] = {
        "name": args.event,
        "channel": args.channel,
        "data": _data_argument(args.data, raw=args.raw),
    }
    key = settings.api_keys[0].get_secret_value()
    try:
        response = httpx.post(url, json=body, headers={"X-API-Key": key}, timeout=10)
    except httpx.HTTPError as exc:
        print(f"relay: cannot reach {url}: {exc.__class__.__name__}", file=sys.stderr)
        return 1
    if response.is_success:
        print(response.text)
        return 0
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    print(f"relay: publish refused ({response.status_code}): {detail}", file=sys.stderr)
    return 1


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from core.tokens import mint_dev_token

    token = mint_dev_token(
        settings, user_id=args.user, name=args.name, ttl=args.ttl, watchlist=args.watch
    )
    print(token)
    return 0


def _explain(settings: Settings, args: argparse.Namespace) -> int:
    from core import principal as principals
    from core.policy import Action, Deny, Policy

    policy = Policy.from_file(settings.policy_file) if settings.policy_file else Policy.default()
    if any("=" not in pair for pair in args.claim):
        raise ValueError("--claim takes NAME=VALUE")
    claims = dict(pair.split("=", 1) for pair in args.claim)
    if args.backend:
        who = principals.Principal(principals.PrincipalKind.BACKEND, id="cli")
    elif args.user is None:
        who = principals.ANONYMOUS
    else:
        who = principals.user(args.user, **claims)
    action = Action(args.action)
    if args.subscribed and action is not Action.CLIENT_EVENT:
        raise ValueError("--subscribed goes with --action client_event")
    explanation = policy.explain(who, action, args.channel, subscribed=args.subscribed)
    print(explanation.render())
    return 1 if isinstance(explanation.decision, Deny) else 0


def _supabase_policies(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from core.policy import Policy
    from providers.supabase.rls import write_migration

    policy_file = args.policy_file or settings.policy_file
    policy = Policy.from_file(Path(policy_file)) if policy_file else Policy.default()
    path, compiled, written = write_migration(policy, Path(args.out))
    for warning in compiled.warnings:
        print(f"relay: warning: {warning}", file=sys.stderr)
    print(f"relay: {'wrote' if written else 'unchanged'} {path}")
    return 0


def _check(settings: Settings, args: argparse.Namespace) -> int:
    from app.relay import Relay

    relay = Relay.build(settings)
    warn_about_dev_defaults(settings)
    print(
        f"relay: configuration ok; provider {relay.provider_label!r}; policy {relay.policy.source}",
        flush=True,
    )
    return asyncio.run(_live_check(relay)) if args.live else 0


async def _live_check(relay: Relay) -> int:
    """Try the provider's credentials with a harmless call: 0 when they work, 1 when not."""
    try:
        said = await relay.provider.check()
    except NotSupported as exc:
        print(f"relay: live check: {exc.detail}")
        return 0
    except ProviderError as exc:
        # The cause (an AWS error code, a connection error) says which part did not work.
        cause = f" ({str(exc.__cause__).splitlines()[0][:200]})" if exc.__cause__ else ""
        print(f"relay: live check failed: {exc.detail}{cause}", file=sys.stderr)
        return 1
    finally:
        await relay.aclose()
    print(f"relay: live check ok: {said}")
    return 0


def _webhooks_test(settings: Settings, args: argparse.Namespace) -> int:
    from app.webhooks import SAMPLE_CHANNEL, send_sample
    from core.webhooks.delivery import safe_url

    if not settings.webhook_url:
        raise ConfigurationError("RELAY_WEBHOOK_URL: set it to the URL(s) to send webhooks to")
    answers = asyncio.run(send_sample(settings))
    print(
        f"relay: sent member_added on {SAMPLE_CHANNEL} ({settings.webhook_format} format)",
        flush=True,
    )
    for answer in answers:
        said = (
            f"{answer.status} {answer.detail}" if answer.status else f"no answer: {answer.detail}"
        )
        print(f"  {safe_url(answer.url)}: {said}")
    return 0 if all(a.delivered for a in answers) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description=__doc__)
    parser.set_defaults(with_provider=False)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the relay (HTTP, WebSocket, SSE)")
    serve.add_argument("--host", help="default RELAY_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, help="default RELAY_PORT or 8000")
    serve.add_argument(
        "--workers",
        default="1",
        help="processes serving the one port (default 1; auto: one per core); more than one "
        "needs RELAY_BACKPLANE=redis and a shared RELAY_STORE",
    )
    serve.set_defaults(run=_serve, with_provider=True)

    publish = commands.add_parser("publish", help="publish through the running relay's REST API")
    publish.add_argument("channel")
    publish.add_argument("event")
    publish.add_argument("data", help="the event's data, as JSON")
    publish.add_argument("--raw", action="store_true", help="send DATA as a string, not as JSON")
    publish.add_argument("--url", help="the relay's base URL (default from RELAY_HOST/PORT)")
    publish.set_defaults(run=_publish)

    token = commands.add_parser("token", help="mint a development JWT the relay accepts")
    token.add_argument("--user", required=True)
    token.add_argument("--name")
    token.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    token.add_argument(
        "--watch",
        action="append",
        default=[],
        metavar="ID",
        help="a user id for the token's watchlist claim (pusher:signin's watchlist); repeatable",
    )
    token.set_defaults(run=_token)

    policy = commands.add_parser("policy", help="inspect the channel policy")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    explain = policy_commands.add_parser("explain", help="which rule decides, and why")
    explain.add_argument("channel")
    explain.add_argument("--user", help="the user id (omit for an anonymous caller)")
    explain.add_argument("--claim", action="append", default=[], metavar="NAME=VALUE")
    explain.add_argument("--backend", action="store_true", help="ask as an API-key backend")
    explain.add_argument(
        "--action",
        default="subscribe",
        choices=["subscribe", "publish", "client_event", "history"],
    )
    explain.add_argument(
        "--subscribed",
        action="store_true",
        help="a client event from a connection already subscribed to the channel, as the socket "
        "asks (without it, the `subscriber` term asks whether the caller may subscribe)",
    )
    explain.set_defaults(run=_explain)

    supabase = commands.add_parser("supabase", help="Supabase Realtime helpers")
    supabase_commands = supabase.add_subparsers(dest="supabase_command", required=True)
    policies = supabase_commands.add_parser(
        "policies", help="compile the channel policy into RLS policies on realtime.messages"
    )
    policies.add_argument("--policy-file", help="default RELAY_POLICY_FILE or the built-in policy")
    policies.add_argument(
        "--out",
        default="infra/supabase/migrations",
        help="migrations directory (default %(default)s)",
    )
    policies.set_defaults(run=_supabase_policies)

    webhooks = commands.add_parser("webhooks", help="outbound webhooks")
    webhooks_commands = webhooks.add_subparsers(dest="webhooks_command", required=True)
    webhooks_test = webhooks_commands.add_parser(
        "test", help="send a signed sample to RELAY_WEBHOOK_URL and print each answer"
    )
    webhooks_test.set_defaults(run=_webhooks_test)

    check = commands.add_parser("check", help="validate configuration and the provider")
    check.add_argument(
        "--live", action="store_true", help="also try the provider's credentials with a call"
    )
    check.set_defaults(run=_check, with_provider=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `relay` console script."""
    args = _parser().parse_args(argv)
    logs.configure("INFO")
    try:
        # serve and check need the provider's settings too: read them in the same pass.
        settings = load_settings_with_provider() if args.with_provider else load_settings()
        logs.configure(settings.log_level)
        if args.command != "serve" and settings.log_level != "DEBUG":
            # A command's own output says what happened: no line per request (httpx), nor where
            # credentials were found (botocore).
            for chatty in ("httpx", "botocore"):
                logging.getLogger(chatty).setLevel(logging.WARNING)
        code: int = args.run(settings, args)
    except ConfigurationError as exc:
        for problem in exc.problems:
            print(f"relay: configuration error: {problem}", file=sys.stderr)
        return 2
    except RelayError as exc:
        print(f"relay: {exc.detail}", file=sys.stderr)
        return 1
    except ValueError as exc:  # an argument the command cannot use (--ttl 0, --claim role)
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
