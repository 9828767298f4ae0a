"""ntd's concepts in ICCAM's numbers and back: classification, age, site type, reasons.

- **Classification**: ntd's categories are INHOPE's words (``baseline``, ``national``; the X-ARF
  ``A1``/``A2``/``B1``/``B2`` of INTERPOL's scheme). ``baseline``, ``a1`` and ``a2``
  (prepubescent) map to ICCAM *Baseline* (1); ``national``, ``b1`` and ``b2`` (pubescent) to
  *National* (2); a not-illegal verdict to *Ignore* (4). Age follows the letter (A
  prepubescent, B pubescent); gender and the three flags are not assessed by ntd (1 = not
  determined, 0 = no) — ntd never guesses what an analyst did not record.
- **Back**: a partner's last assessment becomes ``baseline`` / ``national`` / not illegal.
- **Site type**: a blog platform is a *Blog* (22), a reported URL that serves an image an
  *Image host* (20), anything else the configured default (``[iccam] site_type``, 2 Website).
"""

from __future__ import annotations

from typing import Any

from engine import iccam_v3 as v3

_BASELINE = frozenset({"baseline", "a1", "a2"})
_NATIONAL = frozenset({"national", "b1", "b2"})
BLOG_PLATFORMS = frozenset({"Blogger", "WordPress.com", "Tumblr", "Medium", "LiveJournal"})


def classification_for(category: str | None, *, illegal: bool = True) -> int:
    """ICCAM classification of an ntd category (``illegal=False``: Ignore)."""
    if not illegal:
        return v3.IGNORE
    return v3.NATIONAL if (category or "").lower() in _NATIONAL else v3.BASELINE


def age_for(category: str | None) -> int:
    """ICCAM age category from the INTERPOL letter of a category, else not categorised."""
    text = (category or "").lower()
    if text in ("a1", "a2"):
        return v3.AGE_PREPUBESCENT
    if text in ("b1", "b2"):
        return v3.AGE_PUBESCENT
    return v3.AGE_NOT_CATEGORISED


# The workbench's classification (engine.assessment) in ICCAM's codes.
_AGES = {"ND": v3.AGE_NOT_CATEGORISED, "IN": v3.AGE_INFANT, "PP": v3.AGE_PREPUBESCENT,
         "PU": v3.AGE_PUBESCENT}
_GENDERS = {"UN": v3.GENDER_NOT_DETERMINED, "FE": v3.GENDER_FEMALE, "MA": v3.GENDER_MALE,
            "BO": v3.GENDER_BOTH}
_FLAG_KEYS = dict(zip(("virtual", "user_generated", "child_modelling"), v3.FLAGS, strict=True))


def assessment(category: str | None, *, analyst: str, illegal: bool = True,
               classification: dict[str, Any] | None = None) -> dict[str, Any]:
    """The assessment object ICCAM takes (``PUT .../assessment``, ``urls[].assessment``).

    ``classification``: the analyst's workbench classification of an illegal case (class,
    age, gender and the three flags) — sent as it is. ``doubtful`` goes as National: ICCAM v3
    has no Doubtful, and a National assessment is one the hosting country's hotline may
    overrule (SCART sends Baseline, which nobody may). Without one (a hash-list confirmation)
    the category decides the class and, for INTERPOL letters, the age."""
    out = {"assessingAnalystName": analyst,
           "classification": classification_for(category, illegal=illegal),
           "ageCategorization": age_for(category) if illegal else v3.AGE_NOT_CATEGORISED,
           "genderCategorization": v3.GENDER_NOT_DETERMINED,
           **{flag: 0 for flag in v3.FLAGS}}
    if illegal and isinstance(classification, dict) and classification.get("class"):
        out["classification"] = (v3.BASELINE if classification["class"] == "baseline"
                                 else v3.NATIONAL)
        out["ageCategorization"] = _AGES.get(str(classification.get("age")),
                                         v3.AGE_NOT_CATEGORISED)
        out["genderCategorization"] = _GENDERS.get(str(classification.get("gender")),
                                                   v3.GENDER_NOT_DETERMINED)
        out.update({flag: 1 if classification.get(key) else 0
                    for key, flag in _FLAG_KEYS.items()})
    return out


def category_of(classification: Any) -> str | None:
    """ntd's category for a partner's ICCAM classification (None: not illegal or unknown)."""
    return {v3.BASELINE: "baseline", v3.NATIONAL: "national"}.get(classification)


def last_assessment(content: dict[str, Any]) -> dict[str, Any] | None:
    """The current (last) assessment of an ICCAM content item, if any."""
    found = content.get("assessments") or []
    last = found[-1] if isinstance(found, list) and found else None
    return last if isinstance(last, dict) else None


def site_type_for(case: Any, default: int) -> int:
    """ICCAM site type of a case's page (see the module docstring)."""
    resolution = case.data.get("resolution") or {}
    if isinstance(resolution, dict) and resolution.get("platform") in BLOG_PLATFORMS:
        return 22
    page = next((i for i in case.items if i.kind == "url"), None)
    if page is not None and (page.content_type or "").startswith("image/"):
        return 20
    return default if default in v3.SITE_TYPES else v3.SITE_WEBSITE
