"""A PDF's text, read in a process of its own, so that a hostile file costs only what that process may spend.

chatbot/chat/attachments.py runs it as `python -I chatbot/chat/pdf_reader.py '<limits as JSON>'` with the PDF's bytes on
stdin; it writes one JSON object on stdout: {"text": ..., "pages": n}, or {"refused": why} with why one of
"encrypted", "pages" (with "pages": n), "chars", "expands", "memory" or "damaged". Before it reads a byte it limits
itself: CPU seconds (RLIMIT_CPU: the kernel then stops it), address space (RLIMIT_AS) and no core file; its parent
also kills it at the wall-clock deadline. It imports only the standard library and pypdf, so that it starts
quickly; the words people read are attachments.py's.
"""

from __future__ import annotations

import io
import json
import resource
import sys
from typing import Any

import pypdf
import pypdf.filters  # imported by pypdf only when a stream is decoded: here, before the memory limit

STDERR_BYTES = 1 << 20  # what the reader may write to its stderr file: a flood of warnings stops it


def pypdf_limits(stream_bytes: int) -> dict[str, Any]:
    """pypdf's own limits (pypdf.Configuration), tighter than its defaults, for files from anyone: what a stream
    may expand to, how much decoding work it may take, how far a broken stream is recovered byte by byte; and
    never the external jbig2dec program."""
    return {
        "zlib_maximum_output_length": stream_bytes,
        "lzw_maximum_output_length": stream_bytes,
        "run_length_maximum_output_length": stream_bytes,
        "brotli_maximum_output_length": stream_bytes,
        "jbig2_maximum_output_length": stream_bytes,
        "array_based_stream_maximum_output_length": stream_bytes,
        "image_maximum_buffer_size": stream_bytes,
        "stream_decoding_work_maximum_length": 4 * stream_bytes,
        "zlib_maximum_recovery_input_length": 256 * 1024,
        "jbig2dec_binary": None,
    }


def limit_this_process(cpu_seconds: int, memory_bytes: int) -> None:
    """At most `cpu_seconds` of CPU (then SIGXCPU, then SIGKILL a second later) and `memory_bytes` of address
    space (past it, MemoryError); no core file when it is stopped."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (STDERR_BYTES, STDERR_BYTES))  # its warnings: a file of that size


def read(data: bytes, max_pages: int, max_chars: int, stream_bytes: int) -> dict[str, Any]:
    """The text of a PDF and its number of pages, or why it was not read (a limit broken, or a damaged file)."""
    pieces: list[str] = []
    chars = 0
    try:
        with pypdf.apply_configuration(**pypdf_limits(stream_bytes)):
            reader = pypdf.PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                return {"refused": "encrypted"}
            pages = len(reader.pages)
            if pages > max_pages:
                return {"refused": "pages", "pages": pages}
            for page in reader.pages:
                piece = page.extract_text() or ""
                chars += len(piece)
                if chars > max_chars:
                    return {"refused": "chars"}
                pieces.append(piece)
                reader.resolved_objects = {}  # what the page expanded to is let go: memory stays one page's
    except pypdf.errors.LimitReachedError:
        return {"refused": "expands"}
    except MemoryError:
        return {"refused": "memory"}
    except Exception:  # a damaged or hostile file may break pypdf anywhere
        return {"refused": "damaged"}
    return {"text": "\n\n".join(piece.strip() for piece in pieces if piece.strip()), "pages": pages}


def main() -> None:
    limits = json.loads(sys.argv[1])
    limit_this_process(limits["cpu_seconds"], limits["memory_bytes"])
    try:
        result = read(sys.stdin.buffer.read(), limits["max_pages"], limits["max_chars"], limits["stream_bytes"])
    except MemoryError:  # outside pypdf: the file itself, or its text, is more than the limit
        result = {"refused": "memory"}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
