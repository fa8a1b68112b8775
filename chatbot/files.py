"""Blueprint "files": a conversation's attached files, uploaded one at a time by the page's script (the form
without JavaScript sends them with the message), and served to the conversation's owner alone: images as their
own type, everything else as a download, never as anything a browser would run."""

from __future__ import annotations

import io

from flask import Blueprint, abort, current_app, render_template, request, send_file

from chatbot import attachments
from chatbot.pages import keeping_problem, limited, own_conversation, store

bp = Blueprint("files", __name__)
FILE_CSP = "default-src 'none'; sandbox"  # opened on its own, a file can run nothing and load nothing


bp.add_app_template_filter(attachments.megabytes, "file_size")


def uploads(field: str) -> list[attachments.Attachment]:
    """The files of the request's `field`, each checked and counted against the files an hour this visitor and
    address may attach (never more than one past the limit is read, so that the limit can be told without reading
    a hundred), and all of them against what the visitor's chats may keep; AttachmentProblem for the first that
    cannot be attached."""
    limits = attachments.Limits.from_config(current_app.config)
    given = [upload for upload in request.files.getlist(field) if upload.filename]
    checked = []
    for upload in given[: current_app.config["MAX_ATTACHMENTS"] + 1]:
        if refused := limited("files"):
            raise attachments.AttachmentProblem(refused)
        checked.append(attachments.check(upload.filename or "", upload.read(limits.max_bytes + 1), limits))
    if too_much := keeping_problem(sum(len(file.data) for file in checked), "attach it again"):
        raise attachments.AttachmentProblem(too_much)
    return checked


@bp.post("/c/<conversation_id>/files")
def upload(conversation_id: str):
    """Keep one file for the message being written; the answer is its chip for the composer (or why not, as text)."""
    conversation = own_conversation(conversation_id)
    try:
        if not current_app.config["MAX_ATTACHMENTS"]:
            raise attachments.AttachmentProblem("This chat takes no attached files. Send the message without them.")
        found = uploads("file")
        if len(found) != 1:
            raise attachments.AttachmentProblem("Choose one file to attach.")
    except attachments.AttachmentProblem as problem:
        return str(problem), 400, {"Content-Type": "text/plain; charset=utf-8"}
    info = found[0].info
    store().save_file(conversation, info["id"], info, found[0].data)
    return render_template("chat/_attachment.html", file=attachments.listed(info))


@bp.get("/c/<conversation_id>/files/<file_id>")
def serve(conversation_id: str, file_id: str):
    """The file, to its conversation's owner only (anyone else: 404). An image goes as the type its bytes are;
    anything else is a download, text as text/plain, never as HTML or SVG."""
    found = store().load_file(own_conversation(conversation_id), file_id)
    if found is None:
        abort(404)
    return file_response(*found)


def file_response(info: dict, data: bytes):  # type: ignore[no-untyped-def]
    """A stored file as a response that a browser can only show (an image) or save, never run."""
    image = attachments.image_type(data) if info.get("kind") == "image" else None
    # Flask gives a text type its charset (utf-8) by itself: naming it here too would say it twice.
    mimetype = image or ("text/plain" if info.get("kind") == "text" else "application/octet-stream")
    response = send_file(
        io.BytesIO(data),
        mimetype=mimetype,
        as_attachment=image is None,
        download_name=attachments.safe_name(str(info.get("name") or "")),
        etag=False,
        max_age=86400,
    )
    response.headers["Content-Security-Policy"] = FILE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.cache_control.private = True
    response.cache_control.public = False
    return response
