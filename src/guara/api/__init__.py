"""JSON API (``/api/v1``): thin routers over ``guara.core``."""
