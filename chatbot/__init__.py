"""A self-hosted chat for Hugging Face models and local model servers. The layers, top down: chatbot.web (Flask),
chatbot.chat (the chat itself), chatbot.services and chatbot.stores (model servers, storage), then config.py;
docs/architecture.md tells how they fit."""
