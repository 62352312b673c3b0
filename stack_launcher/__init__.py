"""Launch the AI stack under docker compose with secrets exported from Infisical."""
__version__ = "0.1.0"
