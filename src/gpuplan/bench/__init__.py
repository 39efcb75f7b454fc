"""Measuring: load generator for OpenAI-compatible servers, llama-bench output, measurement files."""
