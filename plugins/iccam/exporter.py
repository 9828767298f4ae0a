"""Export: our reports and our actions go to ICCAM, each step once, in ICCAM's order.

**Planning** (``plan``) derives, from what happened to each linked case, the steps ICCAM must
hear about, and inserts them into the ICCAM outbox (a key per case, content item and action:
planning again inserts nothing):

- ``assessment`` (seq 10): an imported item whose partner assessment we may overrule (none,
  or National, and no action in ICCAM) when ours differs (Baseline, National or Ignore; an
  illegal verdict without a category keeps the partner's);
- ``ReportedToLEA`` / ``ReportedToISP`` (20): a notice to police or Interpol / to the hoster,
  platform or CDN was sent (the action's date is when it was sent);
- ``hosting`` + ``assign`` (30, 31): the content is hosted abroad now (a re-resolution, the
  origin behind a CDN, or ICCAM assigned foreign-hosted content to us): new hosting, then the
  country re-assigned — after that the item is another hotline's;
- ``Removed`` (40, final): the re-check confirmed removal (case ``closed``) after a notice;
- ``Unavailable`` (40, final): gone before any notice — removed without one, or never
  reachable;
- ``NotIllegal`` (40, final): an analyst's not-illegal verdict, or a known-benign hash.

A content item gets at most one final action (a unique index), none before the assessment and
the earlier actions (steps of an item go out one at a time in ``seq`` order), and nothing once a
final action is planned. Only items assigned to our country are acted on: ICCAM refuses the
others (SCART checks the same).

**Delivering** (``deliver``) claims due steps under a lease (``sending`` is committed before the
request leaves) and sends them. A step found ``sending`` under a dead lease (a ``kill -9``
mid-request) is checked against ICCAM first — ``GET rest/Content/{id}`` shows whether the
action, assessment, reference, hosting or assignment is already there — and only sent if it is
not, so nothing reaches ICCAM twice. A report creation cannot be checked that way (ICCAM has
no lookup by our reference): it becomes ``in_doubt``, shown by ``ntd iccam errors``, until an
operator says which report ICCAM holds (``ntd iccam resolve CASE --report-id N``) or asks for
it to be sent again (``--resend``). Transient failures retry with backoff and jitter
(``[iccam] step_retry_minutes``, doubling) for ``retry_horizon_hours``; permanent ones keep
ICCAM's text (``failed``).

**Our report** (the ``iccam`` notice channel queues it): ``POST rest/reports`` with the page and
the media ntd found illegal on the same host, each with hosting (IP, country, ISP and
organisation, ASN, CDN flag), our assessment and the site type; the answer's report id is
stored, then ``GET rest/Reports/{id}`` maps each URL (exactly as sent) to its content id and
``GET rest/Content/{id}`` tells where ICCAM assigned it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from engine import clock
from engine import iccam_v3 as v3
from engine.notice_content import case_entries, location_for
from engine.pipeline import dead_local_owners
from engine.plugin_manager import call_first
from plugins.iccam.client import ICCAMClient, ICCAMError, ICCAMUnavailable, utc_text
from plugins.iccam.mapping import assessment, classification_for, site_type_for
from plugins.iccam.settings import IccamSettings

log = logging.getLogger("ntd.iccam")

ISP_KINDS = frozenset({"hosting", "platform", "cdn"})
LEA_KINDS = frozenset({"police", "interpol"})
MONITORED = frozenset({"noticed", "monitoring", "escalated", "reappeared", "removed"})
_ROUTED = ("resolved", "routed", "awaiting_routing", "held_for_police", "noticed",
           "monitoring", "escalated", "removed", "reappeared", "closed")
SEQ = {"reference": 0, "assessment": 10, "ReportedToLEA": 20, "ReportedToISP": 20,
       "hosting": 30, "assign": 31, "final": 40}
#: Steps that count as "actions sent" in ``ntd iccam sync``.
ACTION_STEPS = frozenset({"action", "assessment", "hosting", "assign"})


@dataclass
class DeliveryResult:
    """What delivery rounds did."""

    tried: int = 0
    reports_created: int = 0
    actions_sent: int = 0
    references: int = 0
    reconciled: int = 0  # found already in ICCAM after a crash: not sent again
    retrying: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: DeliveryResult) -> None:
        """Sum another round into this one."""
        for name in ("tried", "reports_created", "actions_sent", "references", "reconciled",
                     "retrying"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors


# -- facts of a case ---------------------------------------------------------------------------
def our_verdict(case: Any) -> tuple[bool, str | None, str | None] | None:
    """``(illegal, category, at)`` as ntd decided the case, or None while undecided."""
    verdict = case.data.get("assessment")
    if isinstance(verdict, dict) and verdict.get("verdict") in ("illegal", "not_illegal"):
        return verdict["verdict"] == "illegal", verdict.get("category"), verdict.get("at")
    if case.state == "dismissed":
        return False, None, case.updated_at
    matched = [m for i in case.items for m in i.matches if not m.get("negative")]
    match = case.data.get("match")
    if matched or match or case.state in _ROUTED:
        category = (matched[0].get("category") if matched else None) or (
            match.get("category") if isinstance(match, dict) else None)
        return True, category, None
    return None


def our_classification(case: Any) -> dict[str, Any] | None:
    """The analyst's workbench classification of the case (class, age, gender, flags)."""
    verdict = case.data.get("assessment")
    found = verdict.get("classification") if isinstance(verdict, dict) else None
    return found if isinstance(found, dict) else None


def hosting_now(case: Any) -> tuple[str | None, str | None]:
    """``(country, ip)`` of the case's hosting as ntd knows it (the origin behind a CDN)."""
    location = location_for(case, {"recipient_kind": "hosting"})
    ips = location.get("ips") or []
    country = location.get("country")
    return (str(country).upper() if country else None), (str(ips[0]) if ips else None)


def _final(case: Any, notices: dict[str, str]) -> tuple[str, str, dict[str, Any]] | None:
    """``(action, at, payload)`` of the final action the case's facts call for, if any."""
    verdict = our_verdict(case)
    if verdict is not None and not verdict[0]:
        negative = any(m.get("negative") for i in case.items for m in i.matches)
        reason = (v3.REASON_OTHER, "known non-illegal content (negative hash list)") \
            if negative and not case.data.get("assessment") else \
            (v3.REASON_BELOW_THRESHOLD, "assessed not illegal by the hotline")
        return "NotIllegal", verdict[2] or case.updated_at, {"reason_id": reason[0],
                                                             "reason_text": reason[1]}
    monitoring = case.data.get("monitoring") or {}
    removed_at = monitoring.get("removed_at") if isinstance(monitoring, dict) else None
    if case.state == "closed" and removed_at:
        noticed = [at for at in notices.values() if at <= removed_at]
        if noticed:
            return "Removed", removed_at, {}
        return "Unavailable", removed_at, {"reason_id": v3.REASON_CONTENT_NOT_FOUND,
                                           "reason_text": "gone before any notice"}
    fetched = any(i.status is not None and 200 <= i.status < 300 for i in case.items)
    if case.state == "failed" and not fetched:
        return "Unavailable", case.updated_at, {
            "reason_id": v3.REASON_404_OR_SITE_DOWN,
            "reason_text": f"not reachable: {case.state_reason or 'error'}"}
    return None


def plan_item(item: dict[str, Any], case: Any, notices: dict[str, str], *, country: str,
              analyst: str, now: str, moved_to: tuple[str, str | None] | None = None
              ) -> list[dict[str, Any]]:
    """The steps one content item needs now (existing ones are skipped by their key)."""
    partner = item.get("partner") or {}
    if any(a in v3.FINAL_ACTIONS for a in partner.get("actions") or []):
        return []  # ICCAM already holds a final action for it
    base = {"case_id": case.id, "item_id": item["id"], "content_id": item["content_id"]}
    steps: list[dict[str, Any]] = []
    verdict = our_verdict(case)
    existing = {s["action"] or s["step"] for s in item.get("steps") or []}
    if item["origin"] == "import" and verdict is not None and "assessment" not in existing:
        theirs = (partner.get("assessment") or {}).get("classification")
        ours = classification_for(verdict[1], illegal=verdict[0])
        # Ours goes in where the partner's may be overruled (none, or National, and no action
        # yet) — and only if we know better: illegal without a category keeps the partner's.
        known = not verdict[0] or verdict[1] is not None or theirs is None
        if theirs in (None, v3.NATIONAL) and not partner.get("actions") and ours != theirs \
                and known:
            steps.append({**base, "step": "assessment", "seq": SEQ["assessment"],
                          "fact_at": verdict[2] or now,
                          "payload": assessment(verdict[1], analyst=analyst,
                                                illegal=verdict[0],
                                                classification=our_classification(case))})
    for kinds, action in ((LEA_KINDS, "ReportedToLEA"), (ISP_KINDS, "ReportedToISP")):
        sent = sorted(at for kind, at in notices.items() if kind in kinds)
        if sent:
            steps.append({**base, "step": "action", "action": action, "seq": SEQ[action],
                          "fact_at": sent[0], "payload": {}})
    where, ip = moved_to or hosting_now(case)
    if not where and item.get("hosting_country") and item["hosting_country"] != country:
        where, ip = item["hosting_country"], item.get("hosting_ip")  # ICCAM says: abroad
    if where and where != country and where != "ZZ":
        # Hosted abroad: tell ICCAM where, then hand the item to that country's hotline.
        payload = {"country": where, "ip": ip or item.get("hosting_ip") or ""}
        steps.append({**base, "step": "hosting", "seq": SEQ["hosting"], "fact_at": now,
                      "payload": payload})
        steps.append({**base, "step": "assign", "seq": SEQ["assign"], "fact_at": now,
                      "payload": {"country": where}})
        return steps
    final = _final(case, notices)
    if final is not None:
        action, at, payload = final
        steps.append({**base, "step": "action", "action": action, "seq": SEQ["final"],
                      "fact_at": at, "payload": payload, "final": True})
    return steps


def report_body(case: Any, *, settings: IccamSettings, received_at: str,
                reference: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``POST rest/reports`` for one case, and the URLs it sends (for the store).

    The page and the media ntd found illegal on the page's host (media elsewhere has other
    hosting, which the case does not know); hosting from the resolution (the origin's behind
    a CDN); our assessment per URL; nothing about the reporter (only allow-listed case facts).
    """
    location = location_for(case, {"recipient_kind": "hotline"})
    country, ip = hosting_now(case)
    org = location.get("org") or location.get("network_name") or ""
    asn = location.get("asn")
    verdict = our_verdict(case)
    illegal = verdict[0] if verdict else True
    classification = our_classification(case)
    urls: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []
    for n, entry in enumerate(case_entries(case, location)):
        if n and urlsplit(entry["url"]).hostname != case.host:
            continue
        category = entry.get("classification") or (verdict[1] if verdict else None)
        urls.append({
            "urlString": entry["url"], "hotlineReference": reference,
            "hostingCountryCode": country or "ZZ", "hostingIpAddress": ip or "",
            "hostingIsp": org, "hostingOrganization": {"organizationName": org},
            "autonomousSystemNumber": str(asn) if asn is not None else None,
            "isContentDeliveryNetwork": bool(location.get("cdn")),
            "isSourceUrl": n == 0, "memo": None,
            "contentType": v3.CONTENT_WEBSITE if n == 0 else v3.CONTENT_MEDIA,
            "assessment": assessment(category, analyst=settings.analyst, illegal=illegal,
                                     classification=classification),
            "actions": []})
        sent.append({"url": entry["url"], "is_source": n == 0, "hosting_country": country,
                     "hosting_ip": ip})
    body = {"reportingAnalystName": settings.analyst,
            "hotlineReceivedDate": utc_text(clock.parse(received_at)),
            "hotlineReference": reference, "memo": None,
            "sourceUrlUsername": "", "sourceUrlPassword": "", "sourceUrlReferrer": None,
            "sourceUrlSiteType": site_type_for(case, settings.site_type),
            "sourceUrlCommerciality": v3.COMMERCIALITY_NOT_DETERMINED,
            "sourceUrlPaymentMethods": [v3.PAYMENT_NOT_DETERMINED], "urls": urls}
    return body, sent


def action_body(step: dict[str, Any], analyst: str) -> dict[str, Any]:
    """``POST rest/Content/{id}/actions`` for an action step (reason only above 3)."""
    number = v3.ACTION_IDS[step["action"]]
    body: dict[str, Any] = {"actionType": number, "actioningAnalystName": analyst,
                            "actionDate": utc_text(clock.parse(step["fact_at"]))}
    if number > v3.REASON_ABOVE:
        payload = step.get("payload") or {}
        body["reasonId"] = int(payload.get("reason_id") or v3.REASON_OTHER)
        body["reasonText"] = str(payload.get("reason_text") or "")
    return body


def _already_there(step: dict[str, Any], content: dict[str, Any], reference: str) -> bool:
    """Whether ICCAM already holds what ``step`` would write (checked after a crash)."""
    kind = step["step"]
    payload = step.get("payload") or {}
    url = content.get("url") or {}
    if kind == "action":
        number = v3.ACTION_IDS[step["action"]]
        return any(a.get("actionType") == number for a in content.get("actions") or [])
    if kind == "reference":
        return content.get("hotlineReference") == reference
    if kind == "assessment":
        found = content.get("assessments") or []
        return bool(found) and found[-1].get("classification") == payload.get("classification")
    if kind == "hosting":
        return url.get("hostingCountryCode") == payload.get("country")
    if kind == "assign":
        return content.get("assignedCountryCode") == payload.get("country")
    return False


class Exporter:
    """Plans and delivers the export steps of one run."""

    def __init__(self, ctx: Any, client: ICCAMClient, settings: IccamSettings) -> None:
        self.ctx = ctx
        self.client = client
        self.settings = settings
        self.rng = random.Random()
        self._released = False

    def reference(self, case_id: str) -> str:
        """Our hotline reference for a case in ICCAM."""
        return f"{self.settings.reference_prefix}-{case_id}"

    # -- planning ------------------------------------------------------------------------------
    async def plan(self) -> int:
        """Read back our new reports, then plan every open item's steps; returns new steps."""
        store = self.ctx.store
        for pending in await store.iccam_unread_reports():
            try:
                await self.read_back(pending["case_id"], int(pending["report_id"]))
            except ICCAMUnavailable as exc:
                log.warning("iccam: reading report %s back: %s", pending["report_id"], exc)
            except ICCAMError as exc:
                log.warning("iccam: reading report %s back: %s", pending["report_id"], exc)
        country = self.settings.hotline_country
        items = await store.iccam_open_items(country)
        if not items:
            return 0
        notices = await store.iccam_notice_facts([i["case_id"] for i in items])
        now = self.ctx.clock.now_text()
        steps: list[dict[str, Any]] = []
        cases: dict[str, Any] = {}
        for item in items:
            case_id = item["case_id"]
            if case_id not in cases:
                cases[case_id] = await store.load_case(case_id)
            case = cases[case_id]
            moved = await self._hosting_check(item, case)
            steps += plan_item(item, case, notices.get(case_id, {}), country=country,
                               analyst=self.settings.analyst, now=now, moved_to=moved)
        return int(await store.iccam_plan(steps, now)) if steps else 0

    async def _hosting_check(self, item: dict[str, Any], case: Any
                             ) -> tuple[str, str | None] | None:
        """Re-resolve the hosting of a monitored item assigned to us once per
        ``hosting_recheck_hours`` (through the run's resolve stage): where is it now?"""
        hours = self.settings.hosting_recheck_hours
        if not hours or case.state not in MONITORED or item["origin"] != "import":
            return None
        checked = item.get("hosting_checked_at")
        now = self.ctx.clock.now()
        if checked and now - clock.parse(checked) < timedelta(hours=hours):
            return None
        await self.ctx.store.iccam_update_item(item["id"], clock.fmt(now),
                                               hosting_checked_at=clock.fmt(now))
        try:
            result, _ = await call_first(self.ctx.pm, "ntd_resolve", case=case, ctx=self.ctx)
        except Exception as exc:  # a lookup failure is no evidence of a move
            log.warning("iccam: hosting re-check of %s: %s", case.id, exc)
            return None
        resolution = (getattr(result, "data", None) or {}).get("resolution")
        if not isinstance(resolution, dict) or getattr(result, "state", "") != "resolved":
            return None
        country = resolution.get("country")
        ips = resolution.get("ips") or []
        if not country:
            return None
        return str(country).upper(), (str(ips[0]) if ips else None)

    async def read_back(self, case_id: str, report_id: int) -> int:
        """Map our report's URLs to ICCAM's content ids and assignments."""
        report = await self.client.report(report_id)
        contents = []
        for entry in report.get("reportContents") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("contentId"), int):
                continue
            content = await self.client.content(entry["contentId"])
            url = content.get("url") or {}
            contents.append({"content_id": entry["contentId"],
                             "url": entry.get("urlString") or url.get("urlString"),
                             "assigned_country": content.get("assignedCountryCode"),
                             "hosting_country": url.get("hostingCountryCode"),
                             "hosting_ip": url.get("hostingIpAddress")})
        return int(await self.ctx.store.iccam_report_read(case_id, report_id, contents,
                                                          self.ctx.clock.now_text()))

    # -- delivering ----------------------------------------------------------------------------
    async def release_dead(self) -> None:
        """Free steps leased by dead processes on this host (once per run)."""
        if self._released:
            return
        self._released = True
        owners = await self.ctx.store.iccam_lease_owners()
        dead = dead_local_owners(list(owners), self.ctx.owner)
        if dead:
            await self.ctx.store.iccam_release_owners(dead)

    async def deliver(self, *, rounds: int = 1000,
                      steps: tuple[str, ...] | None = None) -> DeliveryResult:
        """Claim and send due steps (only ``steps`` kinds, if given) until none is claimable
        (or ``rounds`` rounds)."""
        await self.release_dead()
        total = DeliveryResult()
        for _ in range(rounds):
            claimed = await self.ctx.store.iccam_claim(
                owner=self.ctx.owner, limit=self.settings.batch_size,
                now=self.ctx.clock.now_text(), lease_seconds=self.settings.lease_seconds,
                steps=steps)
            if not claimed:
                break
            results = await asyncio.gather(*(self._one(step) for step in claimed))
            for r in results:
                total.add(r)
        return total

    async def _one(self, step: dict[str, Any]) -> DeliveryResult:
        out = DeliveryResult(tried=1)
        store, owner = self.ctx.store, self.ctx.owner
        try:
            state, response = await self._send(step)
        except ICCAMUnavailable as exc:
            await self._retry(step, str(exc), out)
            return out
        except ICCAMError as exc:
            await store.iccam_finish(step["id"], owner=owner, now=self.ctx.clock.now_text(),
                                     state="failed", error=f"http {exc.status}: {exc.text}")
            out.errors.append(self._error(step, f"http {exc.status}: {exc.text}"))
            return out
        except Exception as exc:  # a bug must not lose the step: it is tried again later
            log.exception("iccam: step %s", step["id"])
            await self._retry(step, f"{type(exc).__name__}: {exc}", out)
            return out
        now = self.ctx.clock.now_text()
        if state == "created":  # recorded by _send_report with the report id
            out.reports_created += 1
            return out
        await store.iccam_finish(step["id"], owner=owner, now=now, state=state,
                                 response=response,
                                 error=response.get("why") if state != "sent" else None)
        if state == "in_doubt":
            out.errors.append(self._error(step, response["why"]))
        elif state == "sent" and not response.get("reconciled"):
            if step["step"] in ACTION_STEPS:
                out.actions_sent += 1
            elif step["step"] == "reference":
                out.references += 1
        elif state == "sent":
            out.reconciled += 1
        return out

    def _error(self, step: dict[str, Any], error: str) -> dict[str, Any]:
        item = step.get("item") or {}
        return {"case_id": step["case_id"], "step": step["step"], "action": step["action"],
                "report_id": item.get("report_id"), "content_id": item.get("content_id"),
                "error": error}

    async def _retry(self, step: dict[str, Any], error: str, out: DeliveryResult) -> None:
        now = self.ctx.clock.now()
        store, owner = self.ctx.store, self.ctx.owner
        s = self.settings
        if now - clock.parse(step["created_at"]) > timedelta(hours=s.retry_horizon_hours):
            text = f"gave up after {step['attempts']} attempts: {error}"
            await store.iccam_finish(step["id"], owner=owner, now=clock.fmt(now),
                                     state="failed", error=text)
            out.errors.append(self._error(step, text))
            return
        delay = s.step_retry_minutes * 60 * 2 ** max(0, step["attempts"] - 1)
        delay = min(delay, 6 * 3600) * (1 + self.rng.uniform(-s.retry_jitter, s.retry_jitter))
        await store.iccam_retry(step["id"], owner=owner, now=clock.fmt(now), error=error,
                                next_attempt_at=clock.fmt(now + timedelta(seconds=delay)))
        out.retrying += 1

    async def _send(self, step: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Send one step; ``(state, response)`` to record."""
        if step["step"] == "report":
            return await self._send_report(step)
        item = step["item"]
        content_id = int(item["content_id"])
        reference = self.reference(step["case_id"])
        if step["recover"]:
            # The last attempt was cut off: ICCAM may hold it already. Look before sending.
            if _already_there(step, await self.client.content(content_id), reference):
                return "sent", {"reconciled": True}
        kind = step["step"]
        payload = step.get("payload") or {}
        now = self.ctx.clock.now_text()
        if kind == "reference":
            await self.client.set_reference(content_id, reference)
        elif kind == "assessment":
            await self.client.assess(content_id, payload)
        elif kind == "action":
            await self.client.action(content_id, action_body(step, self.settings.analyst))
        elif kind == "hosting":
            await self.client.set_hosting(content_id, ip=payload.get("ip") or "",
                                          country=payload["country"])
            await self.ctx.store.iccam_update_item(item["id"], now,
                                                   hosting_country=payload["country"],
                                                   hosting_ip=payload.get("ip") or None)
        elif kind == "assign":
            await self.client.assign_country(content_id, payload["country"])
            await self.ctx.store.iccam_update_item(item["id"], now,
                                                   assigned_country=payload["country"])
        else:
            return "skipped", {"why": f"unknown step {kind!r}"}
        return "sent", {"content_id": content_id}

    async def _send_report(self, step: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        case_id = step["case_id"]
        if step["recover"]:
            why = ("the answer to POST rest/reports was lost (the process died mid-request): "
                   f"ICCAM may hold this report under hotline reference "
                   f"{self.reference(case_id)}; `ntd iccam resolve {case_id} --report-id N` "
                   f"if it does, `--resend` if it does not")
            return "in_doubt", {"why": why}
        store = self.ctx.store
        found = await store.get_case(case_id, events=False)
        if found is None:
            return "skipped", {"why": "the case no longer exists"}
        case = await store.load_case(case_id)
        if case.data.get("anonymised_at") or case.state == "anonymised":
            return "skipped", {"why": "the case is anonymised"}
        received = min((r["received_at"] for r in found.get("reports") or []),
                       default=case.created_at)
        body, urls = report_body(case, settings=self.settings, received_at=received,
                                 reference=self.reference(case_id))
        await store.iccam_link_export(case_id, urls, self.ctx.clock.now_text())
        report_id = await self.client.create_report(body)
        await store.iccam_report_created(step["id"], owner=self.ctx.owner, case_id=case_id,
                                         report_id=report_id, now=self.ctx.clock.now_text())
        try:
            await self.read_back(case_id, report_id)
        except (ICCAMUnavailable, ICCAMError) as exc:  # planned again on the next round
            log.warning("iccam: reading report %s back: %s", report_id, exc)
        return "created", {"report_id": report_id}

