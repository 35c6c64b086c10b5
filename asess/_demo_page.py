"""The demo's HTML: one self-contained page (inline CSS, no script, no external asset).

:func:`render_page` turns a :class:`PageView` (what the demo knows about the
backend and the current session) into the page; :func:`render_problem` is the
page for a refused action, such as a session too large for its cookies (413).
Long values are shortened for display only, so a grown session does not fill
the screen; the stored data is untouched.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import orjson

SHOWN_CHARS = 64  # longer strings are shown as their length and first characters

_CSS = """
:root { --ink:#1d2433; --muted:#5b6475; --line:#dde2ea; --card:#fff; --bg:#f3f5f9;
        --accent:#2f5bd3; --warn:#b3261e; }
* { box-sizing: border-box; }
body { margin:0; font:16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
       color:var(--ink); background:var(--bg); }
main { max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size:1.6rem; margin:0 0 .25rem; }
.lead { color:var(--muted); margin:0 0 1.25rem; }
.badge { display:inline-block; padding:.15rem .6rem; border-radius:1rem; font-size:.85rem;
         background:#e6ecfb; color:var(--accent); font-weight:600; }
.card { background:var(--card); border:1px solid var(--line); border-radius:.75rem;
        padding:1rem 1.25rem; margin-bottom:1rem; }
table { border-collapse:collapse; width:100%; }
th { text-align:left; font-weight:600; color:var(--muted); width:9.5rem; vertical-align:top;
     padding:.3rem 0; }
td { padding:.3rem 0; overflow-wrap:anywhere; }
pre { margin:0; padding:.75rem; background:#f7f8fb; border-radius:.5rem; overflow:auto;
      font:13px/1.45 ui-monospace, "SFMono-Regular", Menlo, monospace; }
code { font:13px ui-monospace, "SFMono-Regular", Menlo, monospace; }
.actions { display:flex; flex-wrap:wrap; gap:.5rem; }
.actions form { margin:0; }
button { font:inherit; padding:.45rem .9rem; border-radius:.5rem; border:1px solid var(--accent);
         background:var(--accent); color:#fff; cursor:pointer; }
button.quiet { background:#fff; color:var(--accent); }
button.danger { background:#fff; color:var(--warn); border-color:var(--warn); }
.hint { color:var(--muted); font-size:.9rem; margin:.6rem 0 0; }
footer { color:var(--muted); font-size:.9rem; }
footer a { color:var(--accent); }
"""


@dataclass
class PageView:
    """Everything the page shows; the demo fills it per request."""

    backend: str  # one line naming the backend and its options
    chunks: bool  # the backend stores data in the cookie, chunked past 4 kB
    data: dict[str, Any]
    is_new: bool
    handle: str  # id digest, or what the cookie holds
    expiry: str
    cookies: list[tuple[str, int]] = field(default_factory=list)  # name, bytes


def render_page(view: PageView) -> bytes:
    """The demo's single page."""
    size = sum(n for _, n in view.cookies)
    if view.cookies:
        parts = ", ".join(f"<code>{html.escape(name)}</code> {n:,} B" for name, n in view.cookies)
        cookie = f"{size:,} bytes in {len(view.cookies)} cookie(s): {parts}"
    else:
        cookie = "no session cookie yet"
    state = "new: nothing stored yet" if view.is_new else "stored"
    grow_hint = (
        "Grow adds 3,000 characters: past about 4 kB the token is split across "
        "<code>asess_session.1</code>, <code>.2</code>...; past the last chunk the answer is 413."
        if view.chunks
        else "Grow adds 3,000 characters to the stored session; the cookie keeps only the id."
    )
    body = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>asess demo</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<h1>asess demo</h1>
<p class="lead">Emmett's session API on a plain ASGI app.
<span class="badge" id="backend">{html.escape(view.backend)}</span></p>
<section class="card">
<table>
<tr><th>Session</th><td id="state">{state}</td></tr>
<tr><th>Handle</th><td id="handle">{html.escape(view.handle)}</td></tr>
<tr><th>Expiry</th><td id="expiry">{html.escape(view.expiry)}</td></tr>
<tr><th>Cookie size</th><td id="cookie-size">{cookie}</td></tr>
</table>
</section>
<section class="card">
<pre id="data">{html.escape(_shown(view.data))}</pre>
</section>
<section class="card">
<div class="actions">
<form method="post" action="/count"><button id="count">Count a visit</button></form>
<form method="post" action="/grow"><button id="grow" class="quiet">Grow by 3 kB</button></form>
<form method="post" action="/regenerate">
<button id="regenerate" class="quiet">Regenerate</button></form>
<form method="post" action="/logout"><button id="logout" class="danger">Log out</button></form>
</div>
<p class="hint">{grow_hint} Regenerate gives the session a new id (or token), as at login;
log out deletes it and expires the cookie.</p>
</section>
<footer><a href="/counter">/counter</a> answers Emmett's example as text;
<a href="/whoami">/whoami</a> gives the data as JSON.</footer>
</main>
</body>
</html>
"""
    return body.encode()


def render_problem(title: str, explanation: str) -> bytes:
    """A short page for a refused action, with a way back."""
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body><main><h1>{html.escape(title)}</h1>
<section class="card"><p id="explanation">{html.escape(explanation)}</p>
<p><a href="/">Back to the session</a> (it is unchanged).</p></section></main></body>
</html>
""".encode()


def _shown(data: dict[str, Any]) -> str:
    if not data:
        return "{}  (the session is empty)"
    return orjson.dumps(_shorten(data), option=orjson.OPT_INDENT_2, default=str).decode()


def _shorten(value: Any) -> Any:
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return f"{value[:16]}... ({len(value):,} characters)"
    if isinstance(value, dict):
        return {str(k): _shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v) for v in value]
    return value
