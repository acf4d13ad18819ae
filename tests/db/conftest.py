"""A throwaway PostgreSQL database holding a minimal stand-in for Supabase's Realtime schema.

The stand-in has what Realtime Authorization touches: `realtime.messages` (topic, extension,
private, payload, event) with row level security on, `realtime.topic()` reading the channel from
the `realtime.topic` setting, `auth.jwt()` and `auth.uid()` reading the claims from
`request.jwt.claims` as Supabase defines them, and the `anon` and `authenticated` roles.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
import pytest
from psycopg import errors, sql

if TYPE_CHECKING:
    from collections.abc import Iterator

DSN = os.environ.get(
    "RELAY_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
ROLES = ("anon", "authenticated")

STAND_IN = """
create schema realtime;
create schema auth;
create table realtime.messages (
  id bigint generated always as identity primary key,
  topic text not null,
  extension text not null,
  payload jsonb,
  event text,
  private boolean default false,
  inserted_at timestamp not null default now(),
  updated_at timestamp not null default now()
);
create function realtime.topic() returns text language sql stable
  as $$ select nullif(current_setting('realtime.topic', true), '')::text $$;
create function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(nullif(current_setting('request.jwt.claim', true), ''),
                  nullif(current_setting('request.jwt.claims', true), ''))::jsonb $$;
create function auth.uid() returns uuid language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid $$;
alter table realtime.messages enable row level security;
grant usage on schema realtime, auth to anon, authenticated;
grant select, insert on realtime.messages to anon, authenticated;
"""

# Roles are cluster-wide: create them only when missing (another session may race us to it) and
# never drop them, since other databases on this server may use them.
CREATE_ROLE = """
do $$ begin
  if not exists (select 1 from pg_roles where rolname = '{name}') then
    create role {name} nologin noinherit;
  end if;
exception when duplicate_object or unique_violation then null;
end $$;
"""


@dataclass(frozen=True, slots=True)
class Verdicts:
    """What RLS lets a caller do on one topic (or what the relay decides it may)."""

    receive_broadcast: bool
    receive_presence: bool
    send_broadcast: bool
    send_presence: bool


class RlsProbe:
    """Runs Realtime's authorization check, select and insert as the caller, then rolls back."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.notices: list[str] = []
        conn.add_notice_handler(lambda notice: self.notices.append(notice.message_primary or ""))

    def apply(self, migration: str) -> None:
        """Run a migration as the database owner, in one transaction."""
        with self.conn.transaction():
            self.conn.execute(migration.encode())

    def policies(self) -> list[str]:
        """Names of the policies on realtime.messages."""
        rows = self.conn.execute(
            "select policyname from pg_policies where schemaname = 'realtime' "
            "and tablename = 'messages' order by policyname"
        ).fetchall()
        return [row[0] for row in rows]

    def check(self, role: str, claims: dict[str, Any] | None, topic: str) -> Verdicts:
        """As Realtime on a join: the caller's role, claims and topic; a select and inserts."""
        with self.conn.transaction(force_rollback=True):
            self.conn.execute(
                "select set_config('realtime.topic', %s, true), "
                "set_config('request.jwt.claims', %s, true)",
                (topic, orjson.dumps(claims).decode() if claims is not None else ""),
            )
            self.conn.execute(
                "insert into realtime.messages (topic, extension, private) "
                "values (%s, 'broadcast', true), (%s, 'presence', true)",
                (topic, topic),
            )
            self.conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
            seen = {
                row[0]
                for row in self.conn.execute(
                    "select extension from realtime.messages where topic = %s", (topic,)
                )
            }
            sent = {ext: self._insert(topic, ext) for ext in ("broadcast", "presence")}
        return Verdicts(
            "broadcast" in seen, "presence" in seen, sent["broadcast"], sent["presence"]
        )

    def _insert(self, topic: str, extension: str) -> bool:
        try:
            with self.conn.transaction():
                self.conn.execute(
                    "insert into realtime.messages (topic, extension, private) "
                    "values (%s, %s, true)",
                    (topic, extension),
                )
        except errors.InsufficientPrivilege:
            return False
        return True


@pytest.fixture(scope="session")
def rls_database() -> Iterator[str]:
    """A fresh database with the stand-in schema, dropped at the end of the session."""
    try:
        admin: psycopg.Connection[Any] | None = psycopg.connect(
            DSN, autocommit=True, connect_timeout=3
        )
    except psycopg.OperationalError:
        admin = None
    if admin is None:  # failed outside the except block, so the report is this one line
        pytest.fail(
            f"PostgreSQL is not reachable ({DSN}): start it, e.g. `pg_ctlcluster 15 main start`, "
            "or point RELAY_TEST_POSTGRES_DSN at a server",
            pytrace=False,
        )
    name = f"relay_rls_{secrets.token_hex(6)}"
    with admin:
        for role in ROLES:
            admin.execute(CREATE_ROLE.format(name=role).encode())
        unusable = admin.execute(
            "select rolname from pg_roles where rolname = any(%s) and (rolsuper or rolbypassrls)",
            (list(ROLES),),
        ).fetchall()
        if unusable:
            pytest.fail(f"role {unusable[0][0]} bypasses row level security here", pytrace=False)
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        try:
            with psycopg.connect(DSN, dbname=name, autocommit=True) as conn:
                conn.execute(STAND_IN.encode())
            yield name
        finally:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


@pytest.fixture
def rls(rls_database: str) -> Iterator[RlsProbe]:
    """A probe on the throwaway database (policies persist between tests: each applies its own)."""
    with psycopg.connect(DSN, dbname=rls_database, autocommit=True) as conn:
        yield RlsProbe(conn)
