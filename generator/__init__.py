"""llm-blueprint: a wizard that renders a Copier template into a working LLM repository for a track and budget."""
