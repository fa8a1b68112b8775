"""Files attached to a message: an upload checked and turned into what is stored, and what it puts in the prompt.

The kind is decided by the bytes, never by the name: an image is PNG, JPEG, GIF or WebP by its magic bytes (SVG
never is: it is text, shown and served as text); a PDF starts with `%PDF-` and becomes its text (pypdf, in a
process of its own, under hard limits on pages, characters, time, memory and how far any stream may expand);
anything else must be UTF-8 text (code, Markdown, CSV, JSON, plain text). The name is made safe: no folders, no
control characters, not too long.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import re
import signal
import subprocess
import sys
import tempfile
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatbot.services.prompts import estimate_tokens
from chatbot.stores.conversations import Message, new_id

log = logging.getLogger(__name__)

IMAGE_TYPES = (  # (magic bytes at the start, the type they mean); WebP also needs "WEBP" at byte 8
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"RIFF", "image/webp"),
)
NAME_LENGTH = 120
LISTED = ("id", "name", "kind", "mime", "size")  # what a message keeps of each of its files (never the text)
PDF_SECONDS = 10.0  # reading one PDF's text may take this long; then the process reading it is killed
PDF_STREAM_BYTES = 8 * 1024 * 1024  # no stream of a PDF may expand to more than this (pypdf's default is 75 MB)
PDF_MEMORY_BYTES = 512 * 1024 * 1024  # the address space of the process that reads a PDF
PDF_READERS = threading.BoundedSemaphore(2)  # readers at once in a worker: each may take a CPU and 512 MB
PDF_READER = Path(__file__).with_name("pdf_reader.py")  # that process: run by its path, it starts without Flask


class AttachmentProblem(ValueError):
    """Why a file cannot be attached (or sent), in words for the user that say what to do."""


@dataclass(frozen=True)
class Limits:
    """How large a file may be, how much text it may give, how many pages a PDF may have."""

    max_bytes: int
    max_chars: int
    max_pages: int
    pdf_seconds: float = PDF_SECONDS
    pdf_memory_bytes: int = PDF_MEMORY_BYTES

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Limits:
        return cls(
            max_bytes=int(config["ATTACHMENT_MAX_MB"] * 1024 * 1024),
            max_chars=config["ATTACHMENT_MAX_CHARS"],
            max_pages=config["ATTACHMENT_MAX_PAGES"],
        )


@dataclass(frozen=True)
class Attachment:
    """A checked file: what is stored about it (`info`: id, safe name, kind, type, size, and the text of a text
    file or PDF) and its bytes."""

    info: dict[str, Any]
    data: bytes


def listed(info: Mapping[str, Any]) -> dict[str, Any]:
    """What a message lists of one of its files: never its text, which stays with the file."""
    return {key: info[key] for key in LISTED if key in info}


def names(message: Message) -> str:
    """The names of the files a message lists, on one line ("" when it has none)."""
    return ", ".join(str(file.get("name", "")) for file in message.meta.get("attachments", []))


def in_words(message: Message) -> str:
    """What a message says: its text, or the names of its files when it has none (a file sent alone)."""
    return message.content or names(message)


def check(name: str, data: bytes, limits: Limits) -> Attachment:
    """The upload `name`, `data` checked and made ready to store; AttachmentProblem says why not."""
    name = safe_name(name)
    if not data:
        raise AttachmentProblem(f"{name} is empty. Choose a file with something in it.")
    if len(data) > limits.max_bytes:
        raise AttachmentProblem(
            f"{name} is larger than {megabytes(limits.max_bytes)}, the limit for a file. "
            "Attach a smaller file (or a part of it)."
        )
    info: dict[str, Any] = {"id": new_id(), "name": name, "size": len(data)}
    if mime := image_type(data):
        info.update(kind="image", mime=mime)
    elif data.startswith(b"%PDF-"):
        text, pages = pdf_text(name, data, limits)
        info.update(kind="pdf", mime="application/pdf", text=text, pages=pages)
    else:
        info.update(kind="text", mime="text/plain", text=plain_text(name, data, limits))
    return Attachment(info, data)


def safe_name(name: str) -> str:
    """The file's own name alone: no folders (`../../x` is `x`), no control or invisible formatting characters
    (a right-to-left override can disguise `exe.txt`), at most NAME_LENGTH characters with its extension kept."""
    name = re.split(r"[/\\]", name or "")[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp"))
    name = " ".join(name.split()).strip(" .")
    if len(name) > NAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        extension = extension[:16] if dot and stem else ""
        name = name[: NAME_LENGTH - len(extension) - 2].rstrip() + "…" + ("." + extension if extension else "")
    return name or "file"


def image_type(data: bytes) -> str | None:
    """The image type the bytes are (PNG, JPEG, GIF, WebP), or None: whatever the file's name says."""
    for magic, mime in IMAGE_TYPES:
        if data.startswith(magic) and (mime != "image/webp" or data[8:12] == b"WEBP"):
            return mime
    return None


def plain_text(name: str, data: bytes, limits: Limits) -> str:
    """The text of a UTF-8 file (code, Markdown, CSV, JSON, SVG, plain text); AttachmentProblem for anything
    binary."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AttachmentProblem(
            f"{name} is neither an image (PNG, JPEG, GIF, WebP), nor a PDF, nor UTF-8 text. "
            "Attach images, PDFs or text files (save text as UTF-8)."
        ) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    controls = sum(1 for c in text if unicodedata.category(c) == "Cc" and c not in "\n\t\f")
    if "\x00" in text or controls > max(2, len(text) // 100):  # a stray bell or escape is not binary
        raise AttachmentProblem(f"{name} looks like a binary file, not text. Attach images, PDFs or text files.")
    text = "".join(c for c in text if unicodedata.category(c) != "Cc" or c in "\n\t")
    return _within(name, text, limits)


def _within(name: str, text: str, limits: Limits) -> str:
    if not text.strip():
        raise AttachmentProblem(f"{name} has no text in it. Choose a file with something in it.")
    if len(text) > limits.max_chars:
        raise AttachmentProblem(
            f"{name} has {len(text):,} characters of text; the limit is {limits.max_chars:,} a file. "
            "Attach only the part you need."
        )
    return text


def pdf_text(name: str, data: bytes, limits: Limits) -> tuple[str, int]:
    """The text of a PDF and its number of pages, read in a process of its own (chatbot/chat/pdf_reader.py) under
    pypdf's limits, `limits`, a CPU and a memory limit, and killed at the deadline: a file that breaks any of them
    (a decompression bomb, forms that draw forms) is refused, and this worker's thread or greenlet only waits."""
    arguments = {
        "max_pages": limits.max_pages,
        "max_chars": limits.max_chars,
        "stream_bytes": PDF_STREAM_BYTES,
        "cpu_seconds": math.ceil(limits.pdf_seconds),
        "memory_bytes": limits.pdf_memory_bytes,
    }
    command = [sys.executable, "-I", str(PDF_READER), json.dumps(arguments)]
    too_slow = AttachmentProblem(
        f"Reading {name} took longer than {limits.pdf_seconds:g} s, so it was stopped. "
        "Attach fewer pages, or paste the text you need."
    )
    if not PDF_READERS.acquire(timeout=limits.pdf_seconds):
        raise AttachmentProblem(f"The chat is reading other PDFs: attach {name} again in a few seconds.")
    try:
        with tempfile.TemporaryFile() as stderr:  # a file, bounded by the reader's RLIMIT_FSIZE, not memory
            done = subprocess.run(
                command, input=data, stdout=subprocess.PIPE, stderr=stderr, timeout=limits.pdf_seconds, check=False
            )
            stderr.seek(max(0, stderr.seek(0, io.SEEK_END) - 300))
            said = stderr.read().decode(errors="replace")
    except subprocess.TimeoutExpired:  # killed (subprocess.run does it) and waited for
        raise too_slow from None
    finally:
        PDF_READERS.release()
    if done.returncode in (-signal.SIGXCPU, -signal.SIGKILL):  # its CPU limit
        raise too_slow
    try:
        read = json.loads(done.stdout)
    except ValueError:
        log.warning("the PDF reader failed (exit %s): %s", done.returncode, said)
        read = {"refused": "damaged"}
    if "refused" in read:
        raise pdf_refusal(name, read, limits)
    if not read["text"]:
        raise AttachmentProblem(
            f"{name} has no text to read (a scan is pictures of pages). Attach the pages as images to a model "
            "that takes images, or paste the text."
        )
    return read["text"], read["pages"]


def pdf_refusal(name: str, read: Mapping[str, Any], limits: Limits) -> AttachmentProblem:
    """Why a PDF was not read (chatbot/chat/pdf_reader.py says which limit it broke), in words for the user."""
    why = read["refused"]
    if why == "encrypted":
        return AttachmentProblem(f"{name} is protected by a password. Attach a copy saved without one.")
    if why == "pages":
        return AttachmentProblem(
            f"{name} has {read['pages']:,} pages; the limit is {limits.max_pages:,}. "
            "Attach only the pages you need (print them to a new PDF)."
        )
    if why == "chars":
        return AttachmentProblem(
            f"{name} has more than {limits.max_chars:,} characters of text; the limit is {limits.max_chars:,} a "
            "file. Attach only the pages you need."
        )
    if why == "expands":
        return AttachmentProblem(
            f"{name} was not read: a part of it expands far beyond what a PDF's text needs (more than "
            f"{megabytes(PDF_STREAM_BYTES)}), as a malicious file's would. Attach another copy, or paste its text."
        )
    if why == "memory":
        return AttachmentProblem(
            f"{name} was not read: reading it needs more memory than a PDF's text should (more than "
            f"{megabytes(limits.pdf_memory_bytes)}), as a malicious file's would. Attach another copy, or paste its "
            "text."
        )
    return AttachmentProblem(
        f"{name} could not be read as a PDF (it may be damaged). Attach another copy, or paste its text."
    )


def megabytes(size: int) -> str:
    """A file's size as people read it: bytes, KB or MB."""
    if size < 1024:
        return f"{size} byte{'s' if size != 1 else ''}"
    return f"{size / (1024 * 1024):.1f} MB" if size >= 102400 else f"{round(size / 1024)} KB"


def as_prompt(info: Mapping[str, Any]) -> str:
    """A text file's or PDF's text as the model reads it: its name, then the text in a fence no line of it can
    close."""
    pages = f" ({info['pages']} pages)" if info.get("pages") else ""
    return f"Attached file: {info['name']}{pages}\n{fenced(info.get('text') or '')}"


def fenced(text: str) -> str:
    """`text` in a Markdown code fence that no line of it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def data_url(info: Mapping[str, Any], data: bytes) -> str:
    """An image as OpenAI content parts carry it."""
    return f"data:{info['mime']};base64,{base64.b64encode(data).decode('ascii')}"


def turn(role: str, text: str, files: list[tuple[dict[str, Any], tuple[dict, bytes] | None]], images: bool) -> dict:
    """A message's turn with its files (each as listed, and as stored or None): every text file's and PDF's text
    before the message's own, and its images as data: URLs when the model is shown images (else a line that
    says one was there)."""
    parts: list[str] = []
    urls: list[str] = []
    for shown, stored in files:
        if stored is None:
            parts.append(f"[Attached file {shown.get('name')}: no longer kept]")
        elif stored[0]["kind"] != "image":
            parts.append(as_prompt(stored[0]))
        elif images:
            urls.append(data_url(*stored))
        else:
            parts.append(f"[Attached image {stored[0]['name']}: not shown to this model, which does not take images]")
    content = "\n\n".join([*parts, text] if text.strip() else parts)
    return {"role": role, "content": content, "images": urls} if urls else {"role": role, "content": content}


def sending_problem(
    files: list[dict[str, Any]],
    text: str,
    model: str,
    takes_images: bool,
    room: int | None,
    max_files: int,
) -> str | None:
    """Why a message with `files` (as stored) cannot go to `model`, in words; None when it can. `room`: the
    tokens the model's context leaves for the prompt (None: not known)."""
    if len(files) > max_files:
        if not max_files:
            return "This chat takes no attached files. Send the message without them."
        return f"A message takes at most {max_files} files; this one has {len(files)}. Remove {len(files) - max_files}."
    if not takes_images and (image := next((f for f in files if f["kind"] == "image"), None)):
        return (
            f"{model} does not take images, so nothing was sent ({image['name']}). Pick a model that takes images "
            "(the model list says “images”), or remove the image."
        )
    tokens = estimate_tokens("\n\n".join([*(as_prompt(f) for f in files if f["kind"] != "image"), text]))
    if room is not None and any(f["kind"] != "image" for f in files) and tokens > room:
        return (
            f"Your message and its files come to about {tokens:,} tokens, more than the {room:,} that {model} can "
            "read with room left for its answer, so nothing was sent. Remove a file, or attach only the part you need."
        )
    return None
