"""What the JSON API and the dashboard share: the request's context and caller, the session cookie and
CSRF rules, and how a guara error becomes an HTTP status. Neither adapter imports the other."""
