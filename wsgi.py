"""The WSGI entry point: `gunicorn wsgi:app`. Reads .env, then builds the app."""

import sys

from dotenv import load_dotenv

from config import ConfigError

load_dotenv()

from chatbot.web import create_app  # noqa: E402  (after .env is read)

try:
    app = create_app()
except ConfigError as error:
    print(f"Cannot start the chat: {error}", file=sys.stderr)
    sys.exit(4)  # gunicorn's "app failed to load": it stops instead of restarting workers
