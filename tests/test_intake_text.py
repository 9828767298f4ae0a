"""URLs in what reporters write (engine/intake_text.py): defanged forms, HTML, attachments."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.intake_text import lines_of_attachment, refang, urls_in_html, urls_in_text


def test_refang_undoes_the_usual_forms() -> None:
    assert refang("hxxp://a[.]example[.]test/x") == "http://a.example.test/x"
    assert refang("hXXps[:]//b(dot)example(dot)test") == "https://b.example.test"
    assert refang("c [dot] example [.] test") == "c.example.test"
    assert refang("https[://]d{.}example.test") == "https://d.example.test"


def test_urls_in_text_keep_order_lines_and_drop_trailing_punctuation() -> None:
    text = "See http://a.example.test/x, and (hxxps://b[.]example[.]test/y).\nwww.c.example.test"
    assert urls_in_text(text) == [(1, "http://a.example.test/x"),
                                  (1, "https://b.example.test/y"),
                                  (2, "http://www.c.example.test")]
    assert urls_in_text("wiki http://w.example.test/A_(b)") == [
        (1, "http://w.example.test/A_(b)")]


def test_urls_in_html_read_link_targets_and_text_without_scripts() -> None:
    html = ('<p><a href="http://a.example.test/1">x</a> hxxp://b[.]example[.]test/2</p>'
            '<script>var u="http://evil.example.test/3"</script>')
    assert [u for _, u in urls_in_html(html)] == ["http://a.example.test/1",
                                                  "http://b.example.test/2"]


def test_attachment_rows_use_the_url_column_or_lines() -> None:
    csv = b"\xef\xbb\xbfid,url\n1,hxxp://a[.]example.test\n\n2,http://b.example.test\n"
    assert list(lines_of_attachment(csv, "x.CSV")) == [(2, "http://a.example.test"),
                                                      (4, "http://b.example.test")]
    txt = b"# list\nhttp://c.example.test\n  \nhxxp://d[.]example.test\n"
    assert list(lines_of_attachment(txt, "x.txt")) == [(2, "http://c.example.test"),
                                                      (4, "http://d.example.test")]


@given(st.text(max_size=400))
def test_extraction_never_fails_and_finds_only_http_urls(text: str) -> None:
    for _, url in urls_in_text(text):
        assert url.lower().startswith(("http://", "https://"))
    html = f'<a href="{text}">{text}</a>'
    for _, url in urls_in_html(html):
        assert url.lower().startswith(("http://", "https://"))
