"""plugins.resolve.hosting_rules: CDN and shared-hosting platform recognition from data files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import ConfigError
from plugins.resolve.hosting_rules import HostingRules, Platform


@pytest.fixture(scope="module")
def rules() -> HostingRules:
    return HostingRules.builtin()


@pytest.mark.parametrize(("ip", "asn", "expected"), [
    ("104.21.8.1", None, "Cloudflare"),            # published range, no ASN known
    ("2606:4700:3033::6815:801", None, "Cloudflare"),
    ("203.0.113.9", 13335, "Cloudflare"),          # ASN alone (whole AS is the CDN)
    ("151.101.1.69", None, "Fastly"),
    ("203.0.113.9", 54113, "Fastly"),
    ("203.0.113.9", 20940, "Akamai"),
    ("203.0.113.9", 16625, "Akamai"),
    ("13.224.5.6", 16509, "Amazon CloudFront"),   # CloudFront range inside AWS's AS
    ("203.0.113.9", 16509, None),                 # AS16509 alone is any AWS customer
    ("203.0.113.9", 64501, None),
    (None, None, None),
    ("not-an-ip", 13335, "Cloudflare"),
])
def test_cdn_for(rules: HostingRules, ip: str | None, asn: int | None,
                 expected: str | None) -> None:
    assert rules.cdn_for(ip, asn) == expected


def test_cdn_info_has_abuse_channel(rules: HostingRules) -> None:
    cdn = rules.cdn_info("104.16.0.1", None)
    assert cdn is not None and cdn.abuse_channel == "web_form"
    assert cdn.abuse_address.startswith("https://") and 13335 in cdn.asns
    assert {c.name for c in rules.cdns} >= {"Cloudflare", "Akamai", "Fastly", "Amazon CloudFront"}


@pytest.mark.parametrize(("host", "name"), [
    ("someone.blogspot.com", "Blogger"),
    ("a.b.blogspot.com.", "Blogger"),
    ("Tiny-Worker.Alice.workers.dev", "Cloudflare Workers"),
    ("alice.github.io", "GitHub Pages"),
    ("bob.wordpress.com", "WordPress.com"),
    ("x.netlify.app", "Netlify"),
    ("x.pages.dev", "Cloudflare Pages"),
    ("x.000webhostapp.com", "000webhost"),
])
def test_platform_for_subdomains(rules: HostingRules, host: str, name: str) -> None:
    platform = rules.platform_for(host)
    assert platform is not None and platform.name == name
    assert platform.abuse_channel in ("web_form", "email") and platform.abuse_address


@pytest.mark.parametrize("host", ["blogspot.com", "github.io", "notblogspot.com",
                                  "www.hoster-1.test", "blogspot.com.hoster-1.test"])
def test_platform_for_non_platform_hosts(rules: HostingRules, host: str) -> None:
    assert rules.platform_for(host) is None


def test_extra_rules_file_adds_and_overrides(tmp_path: Path) -> None:
    extra = tmp_path / "local-rules.json"
    extra.write_text(json.dumps({
        "platforms": [
            {"name": "Lab Free Hosting", "patterns": ["*.free.hoster-3.test", "exact.test"],
             "abuse_channel": "email", "abuse_address": "abuse@hoster-3.test"},
            {"name": "Blogger", "patterns": ["*.blogspot.com"], "abuse_channel": "email",
             "abuse_address": "blogger-abuse@hotline.example"},
        ],
        "cdns": [{"name": "Lab CDN", "asns": [64999], "ranges": ["198.51.100.0/24"],
                  "abuse_channel": "api", "abuse_address": "https://cdn.example/api/abuse"}],
    }))
    rules = HostingRules.builtin(extra)
    assert rules.platform_for("a.free.hoster-3.test") == Platform(
        name="Lab Free Hosting", abuse_channel="email", abuse_address="abuse@hoster-3.test",
        pattern="*.free.hoster-3.test")
    exact = rules.platform_for("exact.test")
    assert exact is not None and exact.pattern == "exact.test"
    blogger = rules.platform_for("x.blogspot.com")
    assert blogger is not None and blogger.abuse_address == "blogger-abuse@hotline.example"
    assert rules.cdn_for("198.51.100.7", None) == "Lab CDN"
    assert rules.cdn_for(None, 64999) == "Lab CDN"
    assert rules.cdn_for("104.16.0.1", None) == "Cloudflare"  # built-ins still there


@pytest.mark.parametrize(("doc", "fragment"), [
    ({"platforms": [{"name": "X", "patterns": [], "abuse_channel": "email",
                     "abuse_address": "a@x.test"}]}, "platforms[0].patterns"),
    ({"platforms": [{"name": "X", "patterns": ["*.x.test"], "abuse_channel": "fax",
                     "abuse_address": "a@x.test"}]}, "platforms[0].abuse_channel"),
    ({"cdns": [{"name": "C", "asns": ["13335"], "abuse_channel": "email",
                "abuse_address": "a@x.test"}]}, "cdns[0].asns"),
    ({"cdns": [{"name": "C", "ranges": ["300.0.0.0/8"], "abuse_channel": "email",
                "abuse_address": "a@x.test"}]}, "cdns[0].ranges"),
    ({"something": []}, "'cdns' and/or 'platforms'"),
])
def test_bad_rules_file_names_the_field(tmp_path: Path, doc: object, fragment: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as info:
        HostingRules().load(path)
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_unreadable_rules_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="extra_rules_file"):
        HostingRules().load(tmp_path / "missing.json")
