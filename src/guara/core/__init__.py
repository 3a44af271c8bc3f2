"""Use cases. Called by ``api/``, ``web/`` and ``cli.py``; raise only ``guara.core.errors``."""
