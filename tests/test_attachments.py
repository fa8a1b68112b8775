"""Checking an attached file: the kind from its bytes, a safe name, every limit said in words, hostile files refused."""

import threading
import time
import tracemalloc
import zlib
from dataclasses import replace

import pytest

from chatbot.chat import attachments
from chatbot.chat.attachments import AttachmentProblem, Limits, as_prompt, check, data_url, listed, megabytes, safe_name
from tests.samples import flate_bomb, nested_forms, pdf, png, text_page

LIMITS = Limits(max_bytes=2 * 1024 * 1024, max_chars=10_000, max_pages=5)
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (png(), "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64), "image/jpeg"),
        (b"GIF89a" + bytes(64), "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(64), "image/webp"),
    ],
)
def test_an_image_is_known_by_its_bytes_whatever_its_name(data, mime):
    attached = check("notes.txt", data, LIMITS)
    assert (attached.info["kind"], attached.info["mime"], attached.info["size"]) == ("image", mime, len(data))
    assert attached.data == data and "text" not in attached.info
    assert data_url(attached.info, data).startswith(f"data:{mime};base64,")


def test_text_named_as_an_image_is_text():
    attached = check("photo.png", b"name,age\nAda,36\n", LIMITS)
    assert (attached.info["kind"], attached.info["mime"], attached.info["text"]) == (
        "text",
        "text/plain",
        "name,age\nAda,36\n",
    )


def test_an_svg_with_script_is_never_an_image_only_its_text():
    attached = check("logo.svg", SVG, LIMITS)
    assert (attached.info["kind"], attached.info["mime"]) == ("text", "text/plain")
    assert attached.info["text"] == SVG.decode()


@pytest.mark.parametrize(
    ("given", "safe"),
    [
        ("../../x", "x"),
        ("..\\..\\windows\\evil.exe", "evil.exe"),
        ("/etc/passwd", "passwd"),
        ("..", "file"),
        ("", "file"),
        ("re\x00port\x1b[31m.md", "report[31m.md"),
        ("invoice\u202etxt.exe", "invoicetxt.exe"),  # a right-to-left override would show it as invoiceexe.txt
        ("  .hidden  ", "hidden"),
        ("a" * 300 + ".py", "a" * 116 + "….py"),
    ],
)
def test_a_name_is_made_safe(given, safe):
    assert safe_name(given) == safe
    assert len(safe_name(given)) <= 120


def test_the_stored_name_is_the_safe_one():
    assert check("../../x", b"text", LIMITS).info["name"] == "x"


def test_a_file_over_the_size_limit_is_refused_saying_the_sizes():
    with pytest.raises(
        AttachmentProblem, match=r"big.txt is larger than 2.0 MB, the limit for a file\. Attach a smaller"
    ):
        check("big.txt", b"a" * (2_560 * 1024), LIMITS)


def test_an_empty_file_is_refused():
    with pytest.raises(AttachmentProblem, match="empty.txt is empty"):
        check("empty.txt", b"", LIMITS)


@pytest.mark.parametrize(
    "data",
    [bytes(range(256)) * 8, "Grüße".encode("utf-16"), "Grüße, café".encode("latin-1"), b"ELF\x00\x00\x01\x02text"],
)
def test_binary_is_refused_saying_what_can_be_attached(data):
    with pytest.raises(AttachmentProblem, match=r"Attach images, PDFs or text files"):
        check("thing.bin", data, LIMITS)


def test_text_keeps_its_lines_and_loses_control_characters():
    attached = check("code.py", "\ufeffprint('héllo')\r\n\tx = 1\x07\r\n".encode(), LIMITS)
    assert attached.info["text"] == "print('héllo')\n\tx = 1\n"


def test_too_much_text_is_refused_with_the_numbers():
    with pytest.raises(AttachmentProblem, match=r"long.md has 12,000 characters of text; the limit is 10,000 a file"):
        check("long.md", b"x" * 12_000, LIMITS)


def test_a_pdf_becomes_its_text_page_by_page():
    attached = check("report.pdf", pdf(text_page("Hello from a PDF"), text_page("Page (two)")), LIMITS)
    assert (attached.info["kind"], attached.info["pages"]) == ("pdf", 2)
    assert attached.info["text"] == "Hello from a PDF\n\nPage (two)"
    assert listed(attached.info) == {
        "id": attached.info["id"],
        "name": "report.pdf",
        "kind": "pdf",
        "mime": "application/pdf",
        "size": len(attached.data),
    }


def test_a_pdf_with_too_many_pages_is_refused():
    with pytest.raises(AttachmentProblem, match=r"book.pdf has 6 pages; the limit is 5\. Attach only the pages"):
        check("book.pdf", pdf(*[text_page("p")] * 6), LIMITS)


def test_a_pdf_with_too_much_text_is_refused():
    pages = [text_page("word " * 900)] * 3
    with pytest.raises(AttachmentProblem, match=r"long.pdf has more than 10,000 characters of text"):
        check("long.pdf", pdf(*pages), LIMITS)


def test_a_damaged_pdf_is_refused_in_words():
    with pytest.raises(AttachmentProblem, match=r"broken.pdf could not be read as a PDF \(it may be damaged\)"):
        check("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R >>\n%%EOF", LIMITS)


def test_a_pdf_without_text_is_refused_saying_to_send_images():
    with pytest.raises(AttachmentProblem, match=r"scan.pdf has no text to read .* as images to a model"):
        check("scan.pdf", pdf(b"0 0 1 rg 0 0 100 100 re f"), LIMITS)


def measured(work):  # type: ignore[no-untyped-def]
    """Run `work`; the seconds it took and the most memory it held at once, in MB."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        work()
    finally:
        seconds = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1] / (1024 * 1024)
        tracemalloc.stop()
    return seconds, peak


def test_a_pdf_bomb_is_refused_at_once_in_little_memory():
    bomb = pdf(flate_bomb(400), filters="/FlateDecode")  # 400 MB of zeros in a 0.4 MB file
    assert len(bomb) < LIMITS.max_bytes

    def attach() -> None:
        with pytest.raises(AttachmentProblem, match=r"bomb.pdf was not read: a part of it expands far beyond"):
            check("bomb.pdf", bomb, LIMITS)

    seconds, peak = measured(attach)
    assert seconds < 3 and peak < 64, (seconds, peak)


def test_a_pdf_of_many_pages_that_each_expand_a_lot_is_stopped_by_time_in_little_memory():
    page = flate_bomb(7)  # just under the limit a stream may expand to, on every page
    slow = pdf(*[page] * 40, filters="/FlateDecode")
    limits = Limits(max_bytes=20 * 1024 * 1024, max_chars=10_000, max_pages=50, pdf_seconds=0.5)

    def attach() -> None:
        with pytest.raises(AttachmentProblem, match=r"Reading slow.pdf took longer than 0.5 s, so it was stopped"):
            check("slow.pdf", slow, limits)

    seconds, peak = measured(attach)
    assert seconds < 3 and peak < 64, (seconds, peak)


def test_a_pdf_whose_forms_draw_forms_is_stopped_at_its_deadline():
    """2 KB whose one page draws a form 70 times, which draws another 70 times, which shows 100,000 empty strings:
    hours of pypdf's time (a CPU pinned), stopped at the deadline all the same."""
    forms = nested_forms()
    assert len(forms) < 3000
    limits = Limits(max_bytes=LIMITS.max_bytes, max_chars=10_000, max_pages=5, pdf_seconds=1)
    started = time.monotonic()
    with pytest.raises(AttachmentProblem, match=r"Reading forms.pdf took longer than 1 s, so it was stopped"):
        check("forms.pdf", forms, limits)
    assert time.monotonic() - started < 1.5


def test_pdfs_are_read_a_few_at_once_in_a_worker_and_one_more_waits_then_is_refused_in_words(monkeypatch):
    """Each reader may take a CPU and 512 MB: a person uploading many at once does not start as many processes."""
    readers = threading.BoundedSemaphore(1)
    monkeypatch.setattr(attachments, "PDF_READERS", readers)
    limits = Limits(max_bytes=LIMITS.max_bytes, max_chars=10_000, max_pages=5, pdf_seconds=0.5)
    readers.acquire()  # another upload's reader
    started = time.monotonic()
    with pytest.raises(AttachmentProblem, match=r"The chat is reading other PDFs: attach a.pdf again in a few seconds"):
        check("a.pdf", pdf(text_page("Hello")), limits)
    assert 0.5 <= time.monotonic() - started < 1.5
    readers.release()
    assert check("a.pdf", pdf(text_page("Hello")), limits).info["name"] == "a.pdf"


def test_a_pdf_whose_text_needs_more_memory_than_its_reader_may_have_is_refused_in_words():
    """Seven million characters in one string, from a file of 8 KB: read with the usual memory, refused with less."""
    content = b"BT /F1 12 Tf (" + b"a" * 7_000_000 + b") Tj ET"
    long_text = pdf(zlib.compress(content, 9), filters="/FlateDecode")
    assert len(long_text) < 10_000
    limits = Limits(max_bytes=LIMITS.max_bytes, max_chars=10_000_000, max_pages=5)
    assert check("long.pdf", long_text, limits).info["text"] == "a" * 7_000_000
    with pytest.raises(AttachmentProblem, match=r"long.pdf was not read: reading it needs more memory than .* 96.0 MB"):
        check("long.pdf", long_text, replace(limits, pdf_memory_bytes=96 * 1024 * 1024))


def test_a_files_text_goes_to_the_model_with_its_name_in_a_fence_it_cannot_close():
    text = "Use ``` to fence code:\n````\nnot the end\n"
    prompt = as_prompt({"name": "guide.md", "text": text})
    assert prompt == f"Attached file: guide.md\n`````\n{text}\n`````"
    assert as_prompt({"name": "r.pdf", "text": "Hi", "pages": 2}) == "Attached file: r.pdf (2 pages)\n```\nHi\n```"


def test_a_files_size_reads_as_people_say_it():
    assert [megabytes(size) for size in (1, 2, 1536, 3 * 1024 * 1024)] == [
        "1 byte",
        "2 bytes",
        "2 KB",
        "3.0 MB",
    ]
