"""Real files made for tests: a PNG a browser can show, PDFs written by hand (with text, a decompression bomb, or
forms that draw forms)."""

from __future__ import annotations

import itertools
import re
import struct
import zlib


def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A real PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def pdf(*pages: bytes, filters: str = "") -> bytes:
    """A PDF with one page for each content stream given (already encoded with `filters`, e.g. /FlateDecode),
    Helvetica as font F1: objects, cross-reference table and trailer, as PDF 1.4 lays them out."""
    count = len(pages)
    kids = " ".join(f"{3 + 2 * index} 0 R" for index in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
    ]
    font = 3 + 2 * count
    for index, content in enumerate(pages):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * index} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        objects.append(stream(content, filters))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return laid_out(objects)


def stream(content: bytes, filters: str = "", entries: str = "") -> bytes:
    """A stream object's body: its dictionary (with `entries`) and `content`, encoded with `filters`."""
    extra = f" /Filter {filters}" if filters else ""
    return f"<< /Length {len(content)}{extra}{entries} >>\nstream\n".encode() + content + b"\nendstream"


def laid_out(objects: list[bytes]) -> bytes:
    """A PDF of `objects` (numbered from 1, the first the catalogue): cross-reference table and trailer added."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def text_page(text: str) -> bytes:
    """A page's content stream that writes `text` in Helvetica."""
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return f"BT /F1 14 Tf 72 720 Td ({escaped}) Tj ET".encode()


def flate_bomb(megabytes: int) -> bytes:
    """A FlateDecode stream of zeros that expands to `megabytes` MB, made a megabyte at a time (it is about a
    thousand times smaller)."""
    packer = zlib.compressobj(9)
    zeros = bytes(1024 * 1024)
    return b"".join(packer.compress(zeros) for _ in range(megabytes)) + packer.flush()


def nested_forms(draws: int = 70, shows: int = 100_000) -> bytes:
    """A PDF of about 2 KB whose one page draws a form `draws` times, which draws another form `draws` times, which
    shows an empty string `shows` times: a reader that follows it all does draws * draws * shows text operations."""
    form = " /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << {} >>"
    return laid_out(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /XObject << /Outer 5 0 R >> >> >>",
            stream(b"/Outer Do " * draws),
            stream(zlib.compress(b"/Inner Do " * draws, 9), "/FlateDecode", form.format("/XObject << /Inner 6 0 R >>")),
            stream(
                zlib.compress(b"BT /F1 12 Tf " + b"() Tj " * shows + b"ET", 9),
                "/FlateDecode",
                form.format("/Font << /F1 7 0 R >>"),
            ),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


# Markdown as a model streams it, for the live rendering's tests and bench/live_markdown.py.
SECTIONS = [
    "## Step {n}: what to do\n\n",
    "This is **important** and *worth* reading: the `config` file holds {n} settings, see [the docs](https://example.org/{n}).\n\n",
    "- first, open the file\n- then change **one** setting\n- and save it, with `:w` in vim\n\n",
    "1. install\n2. configure the *server*\n3. run it\n\n",
    "| name | value | note |\n|---|---|---|\n| port | {n} | the *default* |\n| host | 127.0.0.1 | local only |\n\n",
    "```python\ndef step_{n}(value):\n    # a comment\n    total = 0\n    for item in range(value):\n"
    "        total += item * {n}\n\n    return total\n```\n\n",
    "> A quote, with a ~~struck~~ word and a long enough line to wrap.\n\n",
]


def tokens(text: str) -> list[str]:
    """Token-sized pieces, about as a model writes them: a word or part of one, with the space before it."""
    return re.findall(r"\s*[^\s]{1,4}|\s+", text)


def mixed(count: int) -> list[str]:
    """`count` tokens of mixed markdown."""
    pieces: list[str] = []
    for n, section in zip(itertools.count(), itertools.cycle(SECTIONS)):
        pieces += tokens(section.format(n=n))
        if len(pieces) >= count:
            return pieces[:count]
    raise AssertionError


def one_block(count: int, code: bool) -> list[str]:
    """`count` tokens of one open block: a code fence that does not end, or a paragraph with no line break."""
    line = "    result = compute(value, {n})  # step {n}\n" if code else "a *word* or **two**, number {n}; "
    pieces = tokens("```python\n") if code else []
    for n in itertools.count():
        pieces += tokens(line.format(n=n))
        if len(pieces) >= count:
            return pieces[:count]
    raise AssertionError
