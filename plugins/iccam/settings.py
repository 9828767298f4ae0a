"""``[iccam]`` configuration: the account, the certificate, and how the exchange behaves.

Nothing points at a real ICCAM by default: with an empty ``base_url`` the plugin stays silent
(no import, no export; forwards through ICCAM stay manual notices). Secrets come from the
environment only: the API user's password from ``NTD_ICCAM_PASSWORD`` (``password_env``), the
client key's passphrase, if it has one, from the variable named by ``key_password_env``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine.config import Config, Option, non_negative, positive, secret_from_env
from engine.errors import ConfigError


def _root(value: Any) -> str | None:
    if value and not re.match(r"https://[^/?#]+", value):
        return "must be an https:// URL (ICCAM is mutual TLS only)"
    return None


def _country(value: Any) -> str | None:
    return None if not value or re.fullmatch(r"[A-Z]{2}", value) else \
        "must be an ISO 3166 alpha-2 code in capitals, e.g. NL"


SCHEMA: dict[str, dict[str, Option]] = {
    "iccam": {
        "base_url": Option(type=str, default="", check=_root,
                           help="ICCAM v3 API root (https://..., ends with /); empty = off"),
        "client_cert": Option(type=str, default="",
                              help="PEM certificate INHOPE issued to the hotline"),
        "client_key": Option(type=str, default="", help="PEM private key of that certificate"),
        "key_password_env": Option(type=str, default="",
                                   help="environment variable with the key's passphrase"),
        "ca_bundle": Option(type=str, default="",
                            help="PEM CA bundle to verify ICCAM's server (empty: system CAs)"),
        "username": Option(type=str, default="", help="the ICCAM API user"),
        "password_env": Option(type=str, default="NTD_ICCAM_PASSWORD",
                               help="environment variable with the API user's password"),
        "hotline_country": Option(type=str, default="", check=_country,
                                  help="our country in ICCAM (default: [routing] home_country)"),
        "poll_minutes": Option(type=float, default=1.0, check=positive,
                               help="`ntd run --daemon` syncs this often"),
        "accept_partner_baseline": Option(type=bool, default=False,
                                          help="a partner's Baseline confirms a case without "
                                               "a second human look"),
        "analyst_name": Option(type=str, default="",
                               help="name sent as reporting/assessing analyst (default: "
                                    "username)"),
        "reference_prefix": Option(type=str, default="NTD",
                                   help="our hotline reference in ICCAM: <prefix>-<case id>"),
        "timeout": Option(type=float, default=30.0, check=positive,
                          help="seconds for one request"),
        "connect_timeout": Option(type=float, default=10.0, check=positive),
        "retries": Option(type=int, default=3, check=non_negative,
                          help="retries of one request on 5xx, 429, timeouts, network errors"),
        "retry_base_seconds": Option(type=float, default=1.0, check=positive),
        "retry_max_seconds": Option(type=float, default=30.0, check=positive),
        "retry_jitter": Option(type=float, default=0.2, check=non_negative),
        "step_retry_minutes": Option(type=float, default=1.0, check=positive,
                                     help="first delay before an export step is tried again "
                                          "(doubles)"),
        "retry_horizon_hours": Option(type=float, default=72.0, check=positive,
                                      help="an export step still failing after this is failed"),
        "lookback_hours": Option(type=float, default=24.0, check=positive,
                                 help="first import window (assignment date)"),
        "overlap_minutes": Option(type=float, default=60.0, check=non_negative,
                                  help="import windows overlap by this much"),
        "max_pages": Option(type=int, default=10, check=positive,
                            help="import pages of 200 per sync"),
        "batch_size": Option(type=int, default=100, check=positive,
                             help="export steps per round"),
        "concurrency": Option(type=int, default=4, check=positive,
                              help="requests in flight"),
        "lease_seconds": Option(type=float, default=120.0, check=positive),
        "hosting_recheck_hours": Option(type=float, default=24.0, check=non_negative,
                                        help="re-resolve the hosting of content assigned to "
                                             "us this often (0 = never)"),
        "site_type": Option(type=int, default=2, help="ICCAM site type when nothing better is "
                                                      "known (2 = Website)"),
    },
}


@dataclass(frozen=True, kw_only=True)
class IccamSettings:
    """``[iccam]`` as the plugin uses it (secrets resolved lazily by ``password()``)."""

    base_url: str
    client_cert: str
    client_key: str
    key_password_env: str
    ca_bundle: str
    username: str
    password_env: str
    hotline_country: str
    poll_minutes: float
    accept_partner_baseline: bool
    analyst_name: str
    reference_prefix: str
    timeout: float
    connect_timeout: float
    retries: int
    retry_base_seconds: float
    retry_max_seconds: float
    retry_jitter: float
    step_retry_minutes: float
    retry_horizon_hours: float
    lookback_hours: float
    overlap_minutes: float
    max_pages: int
    batch_size: int
    concurrency: int
    lease_seconds: float
    hosting_recheck_hours: float
    site_type: int

    @property
    def enabled(self) -> bool:
        """True when an ICCAM root is configured."""
        return bool(self.base_url)

    @property
    def analyst(self) -> str:
        """The analyst name ICCAM records for our writes."""
        return self.analyst_name or self.username

    def password(self) -> str:
        """The API user's password from the environment."""
        secret = secret_from_env("iccam", "password_env", self.password_env)
        return secret or ""

    def key_password(self) -> str | None:
        """The client key's passphrase, if one is configured."""
        return secret_from_env("iccam", "key_password_env", self.key_password_env)

    def check_account(self) -> None:
        """Raise ``ConfigError`` naming what is missing for talking to ICCAM."""
        missing = [k for k in ("client_cert", "client_key", "username") if not getattr(self, k)]
        if missing:
            raise ConfigError(f"[iccam] base_url is set but {', '.join(missing)} "
                              f"{'is' if len(missing) == 1 else 'are'} not")


def iccam_settings(config: Config) -> IccamSettings:
    """Read ``[iccam]`` (the hotline country falls back to ``[routing] home_country``)."""
    section = dict(config.section("iccam"))
    if not section.get("hotline_country"):
        home = config.get("routing", "home_country", None)
        section["hotline_country"] = str(home or "NL").upper()
    base = section.get("base_url") or ""
    if base and not base.endswith("/"):
        section["base_url"] = base + "/"  # paths are relative to the root
    return IccamSettings(**{k: section[k] for k in IccamSettings.__dataclass_fields__})
