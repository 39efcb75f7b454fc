"""Readers that turn real things (GGUF files, config.json, catalog ids) into catalog objects."""
