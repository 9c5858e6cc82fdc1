"""The Titan dashboard: a web UI on the client SDK (the `dashboard` extra, docs/dashboard.md).

Starlette on uvicorn, server-rendered Jinja2 pages, htmx for partial updates and server-sent events
for live data. It talks to the master only through `AsyncTitanClient`, so it may run on any host:

- `app.py` builds the ASGI app (`create_app`); `server.py` serves it (`serve`, `start_in_thread`);
- `auth.py` holds the sessions (server-side; the cookie carries a signed id), CSRF and read-only
  sessions;
- `live.py` is the hub that fans one master stream out to every browser; `feeds.py` the streams
  themselves (the cluster watch, a run's watch, a job's log tail, shared polls);
- `routes/` one small module per area; `render.py` the templates' environment and error pages.

Nothing is imported here: `titan-runtime --help` must not pay for Starlette.
"""
