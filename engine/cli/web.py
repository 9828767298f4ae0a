"""Web commands: ``ntd serve`` and ``ntd users`` (registered by ``engine.cli``)."""

from __future__ import annotations

import os
import sys

import click

from engine.cli.common import JSON_OPT, Obj, emit_json
from engine.cli.root import cli
from engine.errors import InputError


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--https", is_flag=True,
              help="Behind a TLS-terminating proxy: cookies always Secure, HSTS header.")
@click.option("--form-rate", type=click.FloatRange(min=0), default=20.0, show_default=True,
              help="Anonymous reports per second for the whole channel (0: no limit).")
@click.option("--per-url", type=click.IntRange(min=0), default=3, show_default=True,
              help="Submissions of one URL per 10-minute window (0: no limit).")
@click.pass_obj
def serve(obj: Obj, host: str, port: int, https: bool, form_rate: float, per_url: int) -> None:
    """Serve the API, the public report form (/) and the analyst console (/console).

    Sessions are signed with $NTD_WEB_SECRET (random per process when unset: sessions then end
    when the server stops). Client addresses are never logged or stored.
    """
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.web.app import create_app

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.web.deps import SECRET_ENV, WebSettings

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.web.server import serve as run_server

    settings = WebSettings(https=https, form_rate=form_rate, per_url_window=per_url)
    app = create_app(obj.runtime(), settings)
    if not os.environ.get(SECRET_ENV):
        click.echo(f"note: ${SECRET_ENV} is not set; console sessions end when the server stops",
                   err=True)
    click.echo(f"ntd: serving on http://{host}:{port} (form /, console /console, API /api, "
               "OpenAPI /openapi.json)", err=True)
    run_server(app, host, port)


@cli.group()
def users() -> None:
    """Web console accounts (analyst, admin, partner, police) and API tokens."""


def _accounts(obj: Obj):  # type: ignore[no-untyped-def]
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.web.accounts import accounts

    return accounts(obj.runtime().store)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)  # type: ignore


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["analyst", "admin", "partner", "police"]),
              required=True)
@click.option("--country", default=None, metavar="CC",
              help="Partner accounts: the hosting country whose cases they may read.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@JSON_OPT
@click.pass_obj
def users_add(obj: Obj, name: str, role: str, country: str | None, password_stdin: bool,
              as_json: bool) -> None:
    """Create an account (password hashed with argon2id)."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.web.auth import hash_password, validate_account

    country = validate_account(name, role, country)
    password_hash = hash_password(_read_password(password_stdin))
    rt = obj.runtime()
    user_id = _accounts(obj).add_user(name=name, password_hash=password_hash, role=role,
                                      country=country, now=rt.clock.now_text())
    rt.store.audit(actor="cli", action="user_add", obj=f"user:{name}", now=rt.clock.now_text(),
                   detail={"role": role})
    if as_json:
        emit_json({"id": user_id, "name": name, "role": role, "country": country})
    else:
        click.echo(f"added {role} {name}" + (f" ({country})" if country else ""))


@users.command("ls")
@JSON_OPT
@click.pass_obj
def users_ls(obj: Obj, as_json: bool) -> None:
    """List accounts (never hashes or tokens)."""
    rows = _accounts(obj).list_users()
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(f"{r['name']:<20} {r['role']:<8} {r['country'] or '-':<3} "
                   f"tokens {r['tokens']}  since {r['created_at']}")


@users.command("rm")
@click.argument("name")
@click.pass_obj
def users_rm(obj: Obj, name: str) -> None:
    """Delete an account and its API tokens (its sessions end at the next request)."""
    rt = obj.runtime()
    if not _accounts(obj).remove_user(name):
        raise InputError(f"no user {name!r}")
    rt.store.audit(actor="cli", action="user_remove", obj=f"user:{name}",
                   now=rt.clock.now_text())
    click.echo(f"removed {name}")


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.pass_obj
def users_passwd(obj: Obj, name: str, password_stdin: bool) -> None:
    """Set a new password (the account's console sessions end at their next request)."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.web.auth import hash_password

    rt = obj.runtime()
    if not _accounts(obj).set_password_hash(name, hash_password(_read_password(password_stdin))):
        raise InputError(f"no user {name!r}")
    rt.store.audit(actor="cli", action="password_change", obj=f"user:{name}",
                   now=rt.clock.now_text())
    click.echo(f"password of {name} changed; its console sessions have ended")


@users.command("token")
@click.argument("name")
@click.option("--revoke", is_flag=True, help="Revoke every token of the account instead.")
@JSON_OPT
@click.pass_obj
def users_token(obj: Obj, name: str, revoke: bool, as_json: bool) -> None:
    """Create an API token for scripts (printed once; only its SHA-256 is stored)."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.web.auth import new_token

    rt = obj.runtime()
    acc = _accounts(obj)
    user = acc.get_user(name)
    if user is None:
        raise InputError(f"no user {name!r}")
    if revoke:
        n = acc.revoke_tokens(user["id"])
        rt.store.audit(actor="cli", action="tokens_revoke", obj=f"user:{name}",
                       now=rt.clock.now_text(), detail={"tokens": n})
        emit_json({"revoked": n}) if as_json else click.echo(f"revoked {n} token(s) of {name}")
        return
    token, digest = new_token()
    acc.add_token(user_id=user["id"], token_hash=digest, now=rt.clock.now_text())
    rt.store.audit(actor="cli", action="token_create", obj=f"user:{name}",
                   now=rt.clock.now_text())
    if as_json:
        emit_json({"user": name, "token": token})
    else:
        click.echo(token)
