"""Blueprint "files": a conversation's attached files, uploaded one at a time by the page's script (the form
without JavaScript sends them with the message), and served to the conversation's owner alone: images as their
own type, everything else as a download, never as anything a browser would run."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template

from chatbot.chat import attachments
from chatbot.web.common import file_response, own_conversation, store, uploads

bp = Blueprint("files", __name__)


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
