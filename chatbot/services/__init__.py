"""Talking to model servers: one class per wire protocol, the request, the stream, failures in words, the
catalogue and what a server says of itself."""
