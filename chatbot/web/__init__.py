"""The web layer: the app factory, blueprints, the socket, request helpers, template globals and error pages.
Everything that imports Flask lives here, over the chat layer (chatbot.chat)."""

from chatbot.web.app import create_app

__all__ = ["create_app"]
