"""The ICCAM v3 vocabulary: the numbers and texts both sides of the protocol agree on.

ICCAM is INHOPE's report exchange. Its v3 REST API is not publicly documented; these values are
the ones SCART (the Dutch hotline's case system, AbuseIO/SCART-application) sends and reads, as
summarised in the team's protocol notes. Two parties use them: the ``iccam`` plugin (the client)
and the loopback lab's fake server (``engine.lab.iccam_fake``), so they live in the engine, not in
either of them. Mapping ntd's own concepts onto these values is the plugin's business
(``plugins/iccam/mapping.py``).
"""

from __future__ import annotations

# -- paths (relative to the configured root, which ends with "/"; exact case as SCART sends) --
LOGIN = "Authentication"
REFRESH = "Authentication/refresh"
NO_REFERENCE = "rest/Content/no-reference"
CONTENT = "rest/Content/{content_id}"
CONTENT_REFERENCE = "rest/Content/{content_id}/hotline-reference"
CONTENT_ASSESSMENT = "rest/Content/{content_id}/assessment"
CONTENT_ACTIONS = "rest/Content/{content_id}/actions"
CONTENT_HOSTING = "rest/Content/{content_id}/url/hosting"
CONTENT_ASSIGNED_COUNTRY = "rest/Content/{content_id}/assigned-country"
REPORT = "rest/Reports/{report_id}"
REPORTS = "rest/reports"  # POST: create a report (lower case, as SCART sends it)
SITE_TYPE = "rest/Reports/{report_id}/source-url/site-type"

#: Most items ``rest/Content/no-reference`` returns ("default 200, max 200").
MAX_RESULTS = 200
#: ``bearerTokenExpiresIn`` when a login answer lacks it (SCART's assumption).
DEFAULT_TOKEN_SECONDS = 1800

# -- classification of a content item (assessment.classification) ----------------------------
BASELINE = 1
NATIONAL = 2
IGNORE = 4  # not illegal
CLASSIFICATIONS = {BASELINE: "Baseline CSAM", NATIONAL: "National CSAM", IGNORE: "Ignore"}

AGE_NOT_CATEGORISED, AGE_INFANT, AGE_PREPUBESCENT, AGE_PUBESCENT = 1, 2, 3, 4
AGES = {1: "Not categorised", 2: "Infant", 3: "Pre-pubescent", 4: "Pubescent"}
GENDER_NOT_DETERMINED, GENDER_FEMALE, GENDER_MALE, GENDER_BOTH = 1, 2, 3, 4
GENDERS = {1: "Not Determined", 2: "Female", 3: "Male", 4: "Both"}
#: The assessment's yes/no flags (0 = No, 1 = Yes).
FLAGS = ("virtualContentCategorization", "userGeneratedContentCategorization",
         "childModelingCategorization")

# -- contentType of an url in POST rest/reports --------------------------------------------------
CONTENT_MEDIA = 1
CONTENT_WEBSITE = 2

# -- actions (actionType of POST rest/Content/{id}/actions) ----------------------------------------
REPORTED_TO_LEA = 1
REPORTED_TO_ISP = 2
REMOVED = 3
UNAVAILABLE = 4
NOT_ILLEGAL = 6
ACTION_TYPES = {REPORTED_TO_LEA: "ReportedToLEA", REPORTED_TO_ISP: "ReportedToISP",
                REMOVED: "Removed", UNAVAILABLE: "Unavailable", NOT_ILLEGAL: "NotIllegal"}
ACTION_IDS = {name: number for number, name in ACTION_TYPES.items()}
#: After one of these no further action is accepted on the content item.
FINAL_ACTIONS = frozenset({REMOVED, UNAVAILABLE, NOT_ILLEGAL})
#: Actions above this number carry ``reasonId`` and ``reasonText``.
REASON_ABOVE = 3

# -- action reasons (reasonId) ---------------------------------------------------------------
REASON_OTHER = 1
REASON_CONTENT_NOT_FOUND = 2
REASON_404_OR_SITE_DOWN = 9
REASON_REMOVED_BEFORE_ASSESSMENT = 13
REASON_BELOW_THRESHOLD = 16
REASONS = {
    1: "Other", 2: "ContentNotFound", 3: "ReferrerNotKnownOrIncorrect", 4: "UnableToAccess",
    5: "PasswordProtected", 6: "AccountDisabled", 7: "LegallyUnableToAccess", 8: "LinkExpired",
    9: "Error404NotFoundOrSiteDown", 10: "Error503OrContentTemporarilyUnavailable",
    11: "PremiumAccountNecessary", 12: "MissingPartsToOpenFile",
    13: "ContentRemovedBeforeAssessment", 14: "AdultPornography", 15: "NudismOrNotSexualized",
    16: "DoesNotMeetThresholdForIllegality", 17: "ImagesTooSmall", 18: "VirtualMaterial",
    19: "LinkingOrLinklistsNotIllegal", 20: "AgeUnclearOrNotAssessable",
    21: "AgeOverNationalThreshold",
}

# -- report-level enums ----------------------------------------------------------------------
SITE_TYPES = {2: "Website", 3: "File host", 4: "Image store", 5: "Image board", 6: "Forum",
              7: "Banner site", 8: "Link site", 9: "Social Networking", 10: "Redirector",
              11: "Web archive", 18: "Search provider", 20: "Image host", 22: "Blog",
              24: "Not Applicable"}
SITE_WEBSITE = 2
COMMERCIALITY_NOT_DETERMINED = 1
PAYMENT_NOT_DETERMINED = 1

# -- error texts ICCAM answers with (later SCART releases match them) --------------------------
ERR_COMPLETED = "Cannot action: content status Completed"
ERR_FINAL = ("Content can not be actioned further, because it has already a final action")
ERR_ASSESS_ACTIONED = "Cannot assess: content status ToBeActioned"
ERR_ASSESS_PHASE = "Report not in correct state for assessments"
ERR_ACTION_PHASE = "Report not in the right phase to action"
ERR_TOKEN_EXPIRED = "token expired"
ERR_BEARER = "Authorization bearer empty or unknown"
#: Error texts that mean "not yet": try the same request again later.
RETRYABLE_ERRORS = (ERR_ASSESS_PHASE, ERR_ACTION_PHASE, ERR_TOKEN_EXPIRED)


def error_text(body: object, status: int) -> str:
    """ICCAM's error body as one line, the way SCART shows it.

    ``{"errors": {"key": ["msg", ...]}}`` becomes ``[ICCAM key] msg, msg``; anything else
    ``(unknown); http_code=N`` (plus the text when the body is a plain string).
    """
    if isinstance(body, dict) and isinstance(body.get("errors"), dict):
        parts = []
        for key, messages in body["errors"].items():
            if isinstance(messages, list):
                text = ", ".join(str(m) for m in messages)
            else:
                text = str(messages)
            parts.append(f"[ICCAM {key}] {text}")
        if parts:
            return "; ".join(parts)
    if isinstance(body, str) and body.strip():
        return f"{body.strip()[:300]} (http_code={status})"
    return f"(unknown); http_code={status}"


def error_body(key: str, message: str) -> dict[str, dict[str, list[str]]]:
    """The error envelope (``{"errors": {key: [message]}}``; the shape is reconstructed)."""
    return {"errors": {key: [message]}}
