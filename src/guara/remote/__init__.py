"""The remote commands of the ``guara`` CLI: a small typed client over the JSON API (``client``), the
stored login (``login``), names resolved to ids (``names``) and the Typer commands (``commands``)."""
