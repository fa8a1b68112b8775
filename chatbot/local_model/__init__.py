"""The embedded local model: llama.cpp's own server, built once per machine with flags that are safe on
every x86-64 CPU, serving SmolLM2-135M-Instruct from PyPI, supervised by `flask serve`."""
