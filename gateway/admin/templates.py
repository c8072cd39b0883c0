"""The console's pages: Jinja2 templates, autoescaped (every value from upstream or
from a request is text on the page). Kept in a module rather than as files, so that
every way of installing the package carries them."""

from __future__ import annotations

import datetime as dt

from jinja2 import DictLoader, Environment, StrictUndefined

BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }} — xcap-gateway admin</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2327; background: #f6f7f7; }
header { background: #1d2327; color: #fff; padding: .6em 1.2em; display: flex; gap: 1.5em; align-items: baseline; }
header a { color: #c3c4c7; text-decoration: none; }
header a.here { color: #fff; font-weight: bold; }
header .who { margin-left: auto; color: #a7aaad; }
main { padding: 1em 1.2em; }
h1 { font-size: 1.3em; margin: .2em 0 .6em; }
h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
table { border-collapse: collapse; background: #fff; margin-bottom: 1em; }
th, td { border: 1px solid #dcdcde; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f0f0f1; }
td.error, .error { color: #b32d2e; }
td.ok { color: #00733b; }
code, .url { font-family: ui-monospace, monospace; font-size: 12.5px; word-break: break-all; }
form.inline { display: inline; margin: 0; }
button { cursor: pointer; }
.muted { color: #646970; }
pre.raw { background: #fff; border: 1px solid #dcdcde; padding: .8em; white-space: pre-wrap; }
</style>
</head>
<body>
<header>
<strong>xcap-gateway</strong>
{% for href, label in [("/", "Overview"), ("/outbox", "Outbox"), ("/conflicts", "Conflicts"), ("/user", "User view")] %}
<a href="{{ href }}"{% if href == here %} class="here"{% endif %}>{{ label }}</a>
{% endfor %}
<span class="who">signed in as {{ login }}</span>
</header>
<main>
{% block main %}{% endblock %}
</main>
</body>
</html>
"""

OVERVIEW = """{% extends "base.html" %}
{% block main %}
<h1>Sources</h1>
<table id="sources">
<tr><th>source</th><th>type</th><th>last sync</th><th>entries</th><th>last error</th><th>next run</th><th></th></tr>
{% for s in sources %}
<tr id="source-{{ s.name }}">
<td>{{ s.name }}{% if s.read_only %} <span class="muted">(read-only)</span>{% endif %}</td>
<td>{{ s.type }}{% if s.per_user %} <span class="muted">(per user, {{ s.instances }} in memory)</span>{% endif %}</td>
<td>{{ s.last_sync | when }}</td>
<td>{{ s.entries }}</td>
{% if s.held_back %}<td class="error last-error">{{ s.last_error or "a sync that would drop many entries is held back" }}
{% if not s.per_user %}<form class="inline" method="post" action="/sources/{{ s.name | urlencode }}/sync">
<input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="accept_shrink" value="1"><button type="submit">Accept the shrink and sync</button></form>{% endif %}</td>
{% elif s.last_error %}<td class="error last-error">{{ s.last_error }}{% if s.per_user %} ({{ s.failing }} failing){% endif %}</td>
{% else %}<td class="ok last-error">none</td>{% endif %}
<td>{% if s.per_user %}<span class="muted">on each user's request</span>{% else %}{{ s.next_run | when }}{% endif %}</td>
<td>{% if not s.per_user %}<form class="inline" method="post" action="/sources/{{ s.name | urlencode }}/sync">
<input type="hidden" name="csrf" value="{{ csrf }}"><button type="submit">Sync now</button></form>{% endif %}</td>
</tr>
{% endfor %}
</table>

<h1>Documents</h1>
{% for d in documents %}
<h2 id="document-{{ d.key }}">{{ d.key }} <span class="muted">— sources {{ d.config.sources | join(", ") }};
writes to {{ d.config.write_to or "none" }}; served to {{ d.served }} users</span></h2>
<p>Formats: {% for f in d.config.formats %}<code>{{ f }}</code>{% if not loop.last %}, {% endif %}{% endfor %}.
Replace <code>{xui}</code> with the user's SIP address (e.g. <code>alice@example.com</code>), or open the <a href="/user?document={{ d.key | urlencode }}">user view</a> for one user's exact URLs.</p>
<table class="phone-urls">
<tr><th>phone</th><th>setting</th><th>value</th></tr>
{% for s in d.settings %}
<tr><td>{{ s.phone }}</td><td>{{ s.setting }}</td><td class="url">{{ s.value }}</td></tr>
{% endfor %}
</table>
{% endfor %}
{% endblock %}
"""

OUTBOX = """{% extends "base.html" %}
{% block main %}
<h1>Pending changes ({{ pending | length }})</h1>
{% if pending %}
<table id="pending">
<tr><th>#</th><th>queued</th><th>change</th><th>entry</th><th>source</th><th>document</th><th>from</th><th>attempts</th><th>reason</th><th>next attempt</th></tr>
{% for p in pending %}
<tr><td>{{ p.item.id }}</td><td>{{ p.item.created | when }}</td><td>{{ p.item.kind }}</td>
<td>{{ p.name }} <span class="muted url">{{ p.item.entry_id }}</span></td><td>{{ p.item.source }}</td>
<td>{{ p.item.document }}</td><td>{{ p.item.user }}</td><td>{{ p.item.attempts }}</td>
<td class="error">{{ p.parked or p.item.error or "" }}</td><td>{{ p.item.next_attempt | when }}</td></tr>
{% endfor %}
</table>
{% else %}<p class="muted">Nothing waits for its source.</p>{% endif %}

<h1>Failed changes ({{ failed_count }})</h1>
{% if failed %}
<p class="muted">The upstream refused these for good, or they kept failing; their entries show the upstream value again. Retry queues a change again; discard archives it.</p>
<table id="failed">
<tr><th>#</th><th>queued</th><th>change</th><th>entry</th><th>source</th><th>document</th><th>from</th><th>reason</th><th></th></tr>
{% for f in failed %}
<tr id="failed-{{ f.item.id }}"><td>{{ f.item.id }}</td><td>{{ f.item.created | when }}</td><td>{{ f.item.kind }}</td>
<td>{{ f.name }} <span class="muted url">{{ f.item.entry_id }}</span></td><td>{{ f.item.source }}</td>
<td>{{ f.item.document }}</td><td>{{ f.item.user }}</td><td class="error">{{ f.item.error or "" }}</td>
<td><form class="inline" method="post" action="/outbox/{{ f.item.id }}/retry"><input type="hidden" name="csrf" value="{{ csrf }}"><button type="submit">Retry</button></form>
<form class="inline" method="post" action="/outbox/{{ f.item.id }}/discard"><input type="hidden" name="csrf" value="{{ csrf }}"><button type="submit">Discard</button></form></td></tr>
{% endfor %}
</table>
{% endif %}
{% if failed_count > failed | length %}<p class="muted">{{ failed_count - failed | length }} more are in the state database: the gateway keeps {{ failed | length or "none" }} of them in memory, and lists the others here after its next restart (<code>xcap-gateway status</code> counts them all).</p>
{% elif not failed %}<p class="muted">No failed changes.</p>{% endif %}
{% endblock %}
"""

CONFLICTS = """{% extends "base.html" %}
{% block main %}
<h1>Recent conflicts and refused edits</h1>
<p class="muted">Since the console started, newest first: conflicts settled by the document's conflict policy, phones' edits the gateway refused or cut short, and write-backs the upstream refused. The log has every one of them.</p>
{% if events %}
<table id="events">
<tr><th>when</th><th>what</th><th>document</th><th>user</th><th>entry</th><th>source</th><th>details</th></tr>
{% for e in events %}
<tr><td>{{ e.at | when }}</td><td>{{ e.kind }}</td><td>{{ e.fields.get("document", "") }}</td><td>{{ e.fields.get("user", "") }}</td>
<td class="url">{{ e.fields.get("entry", "") }}</td><td>{{ e.fields.get("source", "") }}</td>
<td>{% for k, v in e.fields.items() if k not in ("document", "user", "entry", "source") %}{{ k }}={{ v }}{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>
{% endfor %}
</table>
{% else %}<p class="muted">None since the console started.</p>{% endif %}
{% endblock %}
"""

USER = """{% extends "base.html" %}
{% block main %}
<h1>User view</h1>
<form method="get" action="/user" id="user-form">
<label>xui <input name="xui" value="{{ xui }}" placeholder="alice@example.com" size="32" required></label>
<label>document <select name="document">{% for key in documents %}<option{% if key == document %} selected{% endif %}>{{ key }}</option>{% endfor %}</select></label>
<label>format <select name="format">{% for f in formats %}<option{% if f == format %} selected{% endif %}>{{ f }}</option>{% endfor %}</select></label>
<button type="submit">Show</button>
</form>
{% if problem %}<p class="error" id="problem">{{ problem }}</p>{% endif %}
{% if rows is not none %}
<p><span id="entry-count">{{ rows | length }}</span> entries in {{ document }} for <strong>{{ xui }}</strong>{% if hidden %} ({{ hidden }} more left out by the cap, de-duplication or filters){% endif %}.
<a id="raw-link" href="/user/raw?{{ raw_query }}">Raw bytes ({{ format }}, {{ size }} bytes)</a></p>
<table id="entries">
<tr><th>name</th><th>given</th><th>surname</th><th>company</th><th>title</th><th>email</th><th>business</th><th>mobile</th><th>home</th><th>sip</th><th>category</th><th>source</th></tr>
{% for r in rows %}
<tr><td class="name">{{ r.name }}</td><td>{{ r.given }}</td><td>{{ r.surname }}</td><td>{{ r.company }}</td><td>{{ r.title }}</td><td>{{ r.email }}</td>
<td>{{ r.business | join(", ") }}</td><td>{{ r.mobile | join(", ") }}</td><td>{{ r.home | join(", ") }}</td><td>{{ r.sip | join(", ") }}</td><td>{{ r.category }}</td><td>{{ r.source }}</td></tr>
{% endfor %}
</table>
<h2>What to enter in the phones</h2>
<table class="phone-urls">
<tr><th>phone</th><th>setting</th><th>value</th></tr>
{% for s in settings %}<tr><td>{{ s.phone }}</td><td>{{ s.setting }}</td><td class="url">{{ s.value }}</td></tr>{% endfor %}
</table>
{% endif %}
{% endblock %}
"""


def when(moment: float | None) -> str:
    """A time on the page: UTC, to the second ("never" for none)."""
    if not moment:
        return "never"
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def environment() -> Environment:
    env = Environment(
        loader=DictLoader(
            {
                "base.html": BASE,
                "overview.html": OVERVIEW,
                "outbox.html": OUTBOX,
                "conflicts.html": CONFLICTS,
                "user.html": USER,
            }
        ),
        autoescape=True,
        undefined=StrictUndefined,
    )
    env.filters["when"] = when
    return env
