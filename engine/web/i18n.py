"""Texts of the public report form in Dutch and English, and the language choice.

The language is ``?lang=`` (or the form's hidden ``lang`` field), else the best of
``Accept-Language``, else Dutch (the home hotline's language). The analyst console is English.
"""

from __future__ import annotations

LANGUAGES = ("nl", "en")
DEFAULT = "nl"

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Report child sexual abuse material",
        "intro": "Did you find images or videos of child sexual abuse on the internet? "
                 "Report the web address (URL) here. Analysts check every report and get "
                 "the material taken offline.",
        "anon_title": "Your report is anonymous",
        "anon_1": "We do not ask who you are and we store nothing about you: no IP address, "
                  "no cookies, no browser details.",
        "anon_2": "This page loads nothing from other websites and uses no scripts.",
        "anon_3": "Only the web address you report is stored.",
        "anon_4": "Do not download, copy or send the material itself: that is a crime. "
                  "The address is all we need.",
        "url_label": "Web address (URL) of the page or image",
        "url_hint": "For example https://example.com/page.html — copy it from your browser's "
                    "address bar.",
        "submit": "Send report",
        "thanks_title": "Thank you, your report was received",
        "thanks_body": "An analyst will assess the address. You will not hear back from us, "
                       "because we do not know who you are.",
        "another": "Report another address",
        "error_summary": "Your report could not be sent",
        "rate_limited": "This address has just been reported several times. Thank you — it "
                        "is already being handled. Please try again later if you want to "
                        "report it again.",
        "busy": "We receive many reports right now. Please try again in a minute.",
        "language": "Nederlands",
        "skip": "Skip to the form",
        "err_missing": "Enter the web address you want to report.",
        "err_scheme": "Only web addresses starting with http:// or https:// can be reported.",
        "err_userinfo": "The address contains a user name or password part (user@...). "
                        "Report the address without it.",
        "err_long": "The address is too long (more than 8,000 characters).",
        "err_host": "The address has no valid website name, for example example.com.",
        "err_other": "This is not a valid web address.",
        "technical": "Technical reason",
        "footer": "This form is run by the hotline. Emergency? Call the police: 112.",
    },
    "nl": {
        "title": "Meld seksueel misbruik van kinderen",
        "intro": "Heb je afbeeldingen of video's van seksueel misbruik van kinderen op internet "
                 "gevonden? Meld het webadres (URL) hier. Analisten bekijken elke melding en "
                 "zorgen dat het materiaal offline wordt gehaald.",
        "anon_title": "Je melding is anoniem",
        "anon_1": "We vragen niet wie je bent en we bewaren niets over jou: geen IP-adres, "
                  "geen cookies, geen browsergegevens.",
        "anon_2": "Deze pagina laadt niets van andere websites en gebruikt geen scripts.",
        "anon_3": "Alleen het webadres dat je meldt wordt opgeslagen.",
        "anon_4": "Download, kopieer of verstuur het materiaal zelf niet: dat is strafbaar. "
                  "Het adres is alles wat we nodig hebben.",
        "url_label": "Webadres (URL) van de pagina of afbeelding",
        "url_hint": "Bijvoorbeeld https://example.com/pagina.html — kopieer het uit de "
                    "adresbalk van je browser.",
        "submit": "Melding versturen",
        "thanks_title": "Bedankt, je melding is ontvangen",
        "thanks_body": "Een analist beoordeelt het adres. Je hoort niets terug, omdat wij niet "
                       "weten wie je bent.",
        "another": "Nog een adres melden",
        "error_summary": "Je melding kon niet worden verstuurd",
        "rate_limited": "Dit adres is zojuist al meerdere keren gemeld. Bedankt — het wordt al "
                        "behandeld. Probeer het later opnieuw als je het nogmaals wilt melden.",
        "busy": "We ontvangen nu veel meldingen. Probeer het over een minuut opnieuw.",
        "language": "English",
        "skip": "Direct naar het formulier",
        "err_missing": "Vul het webadres in dat je wilt melden.",
        "err_scheme": "Alleen webadressen die beginnen met http:// of https:// kunnen worden "
                      "gemeld.",
        "err_userinfo": "Het adres bevat een gebruikersnaam of wachtwoord (gebruiker@...). "
                        "Meld het adres zonder dat deel.",
        "err_long": "Het adres is te lang (meer dan 8.000 tekens).",
        "err_host": "Het adres heeft geen geldige websitenaam, zoals example.com.",
        "err_other": "Dit is geen geldig webadres.",
        "technical": "Technische reden",
        "footer": "Dit formulier wordt beheerd door het meldpunt. Noodgeval? Bel de politie: 112.",
    },
}


def choose(query_lang: str | None, accept_language: str | None) -> str:
    """The page language: an explicit choice, else the best Accept-Language match."""
    if query_lang in LANGUAGES:
        return query_lang  # type: ignore[return-value]
    best: tuple[float, str] | None = None
    for part in (accept_language or "").split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower().split("-")[0]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if lang in LANGUAGES and q > 0 and (best is None or q > best[0]):
            best = (q, lang)
    return best[1] if best else DEFAULT


def error_key(reason: str) -> str:
    """The translated message for an intake rejection reason."""
    if reason in ("missing url", "empty URL"):
        return "err_missing"
    if "scheme" in reason or "'//'" in reason:
        return "err_scheme"
    if "userinfo" in reason:
        return "err_userinfo"
    if "longer than" in reason and "URL" in reason:
        return "err_long"
    if "host" in reason or "IDNA" in reason or "IPv" in reason or "port" in reason:
        return "err_host"
    return "err_other"
