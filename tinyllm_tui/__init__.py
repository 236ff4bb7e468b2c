"""tinyllm-tui: a Textual app to chat with, train, inspect and manage tinyllm models."""
