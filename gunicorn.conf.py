"""gunicorn settings, from the environment or .env. An open chat holds a thread (gthread, the default)
or a greenlet (gevent); never the sync worker, where one open chat would hold a whole process."""

import os

from dotenv import load_dotenv

load_dotenv()

bind = os.environ.get("BIND", "127.0.0.1:8000")
# gthread: a thread per open chat, GUNICORN_THREADS of them per worker; about a hundred chats at the defaults.
# gevent: a greenlet per open chat, WORKER_CONNECTIONS per worker; for hundreds to thousands (bench/RESULTS.md).
worker_class = os.environ.get("WORKER_CLASS", "gthread")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "64"))  # requests at once per worker (gthread)
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "1000"))  # requests at once per worker (gevent)
# Open chats hold their thread or greenlet: SOCKET_RESERVE of them per worker stay for pages and health checks.
_capacity = worker_connections if worker_class == "gevent" else threads
os.environ.setdefault("SOCKETS_PER_WORKER", str(max(1, _capacity - int(os.environ.get("SOCKET_RESERVE", "8")))))
timeout = 60
graceful_timeout = 10
control_socket_disable = True  # unused here; one fixed path would clash between instances
accesslog = "-"
# Request lines only: no headers, so no token or cookie reaches the log.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'


def on_starting(server):
    """Check the configuration and the store once, in the master: a bad value stops start-up with one line."""
    import sys

    from chatbot.services.settings import load_settings
    from chatbot.stores import check_it_keeps_data, check_one_process
    from config import ConfigError

    os.environ["CHAT_BIND"] = ",".join(server.cfg.bind)  # for the workers' Host check (ALLOWED_HOSTS)
    try:
        config = load_settings()
        check_one_process(config["CHAT_STORE_URL"], server.cfg.workers)
        accept_nothing = config["REDIS_KEEPS_NOTHING"] == "accept"
        check_it_keeps_data(config["CHAT_STORE_URL"], accept_nothing, lambda line: print(line, file=sys.stderr))
    except ConfigError as error:
        print(f"Cannot start the chat: {error}", file=sys.stderr)
        sys.exit(4)
    if os.fork() == 0:  # the catalogue is asked in a process of its own: a slow one never holds start-up
        try:
            from chatbot.chat.picker import not_live

            for line in not_live(config):  # the chat starts all the same: the catalogue may be wrong, or come back
                print(f"Warning: {line}", file=sys.stderr, flush=True)
        finally:
            os._exit(0)
