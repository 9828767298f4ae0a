"""Configuration of notice delivery: ``[smtp]``, ``[notices]`` and ``[notices.api]``.

Secrets never live in the file: ``username_env``, ``password_env``, ``dkim_key_env`` and each API
recipient's ``auth_env`` name environment variables read with ``engine.config.secret_from_env``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.config import Config, Option, non_negative, one_of, port_list, positive
from engine.errors import ConfigError
from plugins.notify.windows import check_days, check_window


def _address(value: Any) -> str | None:
    return None if isinstance(value, str) and "@" in value else "must be an e-mail address"


def _fraction(value: Any) -> str | None:
    return None if 0 <= value <= 1 else "must be between 0 and 1"


def _api_entry(value: Any) -> str | None:
    allowed = {"endpoint", "auth_env", "auth_header", "auth_scheme", "timeout"}
    unknown = set(value) - allowed
    if unknown:
        return f"unknown keys {sorted(unknown)} (known: {', '.join(sorted(allowed))})"
    endpoint = value.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        return "needs endpoint = \"https://...\""
    return None


SCHEMA: dict[str, dict[str, Option]] = {
    "smtp": {
        "host": Option(type=str, default="127.0.0.1", help="SMTP relay (smarthost)"),
        "port": Option(type=int, default=25, check=positive),
        "tls": Option(type=bool, default=False, help="implicit TLS (port 465)"),
        "starttls": Option(type=bool, default=False, help="upgrade with STARTTLS"),
        "validate_certs": Option(type=bool, default=True),
        "username_env": Option(type=str, default=None, help="env var holding the SMTP user"),
        "password_env": Option(type=str, default=None, help="env var holding the password"),
        "from_address": Option(type=str, default="notices@hotline.invalid", check=_address),
        "timeout": Option(type=float, default=30.0, check=positive),
        "connections": Option(type=int, default=4, check=positive,
                              help="SMTP connections kept open to the relay (reused)"),
        "per_domain_concurrency": Option(type=int, default=2, check=positive,
                                         help="messages in flight per recipient domain"),
        "per_domain_delay_seconds": Option(type=float, default=0.0, check=non_negative,
                                           help="pause between messages to one domain"),
        "dkim_domain": Option(type=str, default=None),
        "dkim_selector": Option(type=str, default=None),
        "dkim_key_env": Option(type=str, default=None,
                               help="env var holding the PEM private key for DKIM"),
    },
    "notices": {
        "mode": Option(type=str, default="send", check=one_of("send", "dry-run")),
        "template_dir": Option(type=str, default=None,
                               help="folder whose templates override the built-in ones"),
        "aggregate_minutes": Option(type=float, default=15.0, check=non_negative),
        "max_urls_per_notice": Option(type=int, default=250, check=positive),
        "dry_run_dir": Option(type=str, default="notices-dry-run"),
        "retry_base_seconds": Option(type=float, default=60.0, check=positive),
        "retry_max_seconds": Option(type=float, default=6 * 3600.0, check=positive),
        "retry_horizon_hours": Option(type=float, default=120.0, check=positive,
                                      help="give up transient failures after this (RFC 5321)"),
        "retry_jitter": Option(type=float, default=0.25, check=_fraction),
        "reply_to": Option(type=str, default=None, check=_address),
        "hotline_name": Option(type=str, default="Hotline"),
        "reference_prefix": Option(type=str, default="NTD"),
        "legal_basis": Option(type=str, default=None,
                              help="replaces the templates' default legal-basis sentence"),
        "recheck_hours": Option(type=float, default=24.0, check=positive,
                                help="first re-check when no route has a deadline"),
        "api_timeout": Option(type=float, default=30.0, check=positive),
        "api_allowed_ports": Option(type=list, default=[80, 443, 8080, 8443], check=port_list,
                                    help="ports an API endpoint may use (the other fetch "
                                         "rules apply as they are: [lab], [resolve.hosts])"),
        "batch_size": Option(type=int, default=64, check=positive,
                             help="notices claimed per round"),
        "lease_seconds": Option(type=float, default=300.0, check=positive),
        "poll_seconds": Option(type=float, default=1.0, check=positive),
        "send_window": Option(type=str, default=None, check=check_window,
                              help='hosters, registrars and platforms get notices only in '
                                   'this window of their country\'s time, e.g. '
                                   '"Mon-Fri 09:00-17:00" (police never wait)'),
        "public_holidays": Option(type=bool, default=True,
                                  help="with send_window: no notices on the recipient "
                                       "country's public holidays"),
        "blocked_days": Option(type=list, default=[], check=check_days,
                               help='dates without notices, e.g. ["2026-12-24"]'),
        "require_approval": Option(type=bool, default=False,
                                   help="addresses found by lookup get mail only once an "
                                        "admin approved them (ntd contacts approve)"),
    },
    "notices.api": {
        "*": Option(type=dict, check=_api_entry,
                    help="API recipient: {endpoint, auth_env, auth_header, auth_scheme, timeout}"),
    },
}


@dataclass(frozen=True, kw_only=True)
class SMTPSettings:
    """The ``[smtp]`` section."""

    host: str
    port: int
    tls: bool
    starttls: bool
    validate_certs: bool
    username_env: str | None
    password_env: str | None
    from_address: str
    timeout: float
    connections: int
    per_domain_concurrency: int
    per_domain_delay_seconds: float
    dkim_domain: str | None
    dkim_selector: str | None
    dkim_key_env: str | None


@dataclass(frozen=True, kw_only=True)
class NoticeSettings:
    """The ``[notices]`` and ``[notices.api]`` sections."""

    mode: str
    template_dir: str | None
    aggregate_minutes: float
    max_urls_per_notice: int
    dry_run_dir: str
    retry_base_seconds: float
    retry_max_seconds: float
    retry_horizon_hours: float
    retry_jitter: float
    reply_to: str | None
    hotline_name: str
    reference_prefix: str
    legal_basis: str | None
    recheck_hours: float
    api_timeout: float
    api_allowed_ports: list[int]
    batch_size: int
    lease_seconds: float
    poll_seconds: float
    send_window: str | None = None
    public_holidays: bool = True
    blocked_days: list[str] = field(default_factory=list)
    require_approval: bool = False
    api: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def window_seconds(self) -> float:
        """The aggregation window in seconds."""
        return self.aggregate_minutes * 60.0


def smtp_settings(config: Config) -> SMTPSettings:
    """``[smtp]`` as a record (defaults filled in by validation)."""
    sect = config.section("smtp")
    names = SMTPSettings.__dataclass_fields__
    values = {k: sect.get(k, SCHEMA["smtp"][k].default) for k in names}
    if values["tls"] and values["starttls"]:
        raise ConfigError("[smtp] tls and starttls: choose one")
    if any(values[k] for k in ("dkim_domain", "dkim_selector", "dkim_key_env")) and not all(
            values[k] for k in ("dkim_domain", "dkim_selector", "dkim_key_env")):
        raise ConfigError("[smtp] dkim_domain, dkim_selector and dkim_key_env go together")
    return SMTPSettings(**values)


def notice_settings(config: Config) -> NoticeSettings:
    """``[notices]`` (+ ``[notices.api]``) as a record."""
    sect = config.section("notices")
    names = [k for k in NoticeSettings.__dataclass_fields__ if k != "api"]
    values = {k: sect.get(k, SCHEMA["notices"][k].default) for k in names}
    return NoticeSettings(**values, api=dict(config.section("notices.api")))
