"""The jinja2 templates of the reports (kept in Python so that they ship with the package).

``base.html`` is the page (inline CSS, no scripts, nothing fetched from the network);
``run.html``, ``compare.html`` and ``dataset.html`` extend it; ``macros.html`` holds the
pieces they share: tables of pre-formatted cells, figures and notes.
"""
from __future__ import annotations

CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dde5; --bg: #ffffff; --soft: #f4f6f9; --accent: #2b5fd9; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); }
header { padding: 18px 28px 10px; border-bottom: 1px solid var(--line); background: var(--soft); }
header h1 { margin: 0 0 2px; font-size: 22px; }
header .subtitle { margin: 0 0 8px; color: var(--muted); }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; font-size: 14px; }
nav a:hover { text-decoration: underline; }
main { padding: 6px 28px 28px; max-width: 1280px; }
section { margin-top: 22px; }
h2 { font-size: 18px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 14px; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: var(--soft); font-weight: 600; }
tr:nth-child(even) td { background: #fafbfc; }
.tables { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
.facts { display: flex; flex-wrap: wrap; gap: 10px 26px; margin: 6px 0; }
.facts div { min-width: 120px; }
.facts dt { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.facts dd { margin: 0; font-size: 18px; font-weight: 600; }
.note { color: var(--muted); background: var(--soft); border-left: 3px solid var(--line); padding: 6px 10px;
        margin: 8px 0; }
.warning { border-left-color: #e0a100; }
figure { margin: 8px 0 14px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; }
details { margin: 6px 0; }
summary { cursor: pointer; color: var(--accent); }
pre { background: var(--soft); padding: 10px 12px; overflow-x: auto; font-size: 13px; border-radius: 4px; }
.pair { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
.pair figure { margin: 0; }
.gallery-item { margin: 0 0 18px; padding-bottom: 10px; border-bottom: 1px dashed var(--line); }
.gallery-item h3 { margin: 0 0 4px; font-size: 14px; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
.grid figure { margin: 0; max-width: 320px; }
.legend span { display: inline-block; margin-right: 14px; font-size: 13px; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px;
          border: 2px solid; }
footer { padding: 14px 28px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); }
a { color: var(--accent); }
"""

BASE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<link rel="icon" href="data:,">
<style>{{ css | safe }}</style>
</head>
<body>
<header>
<h1>{{ title }}</h1>
{% if subtitle %}<p class="subtitle">{{ subtitle }}</p>{% endif %}
<nav>{% for id, label in sections %}<a href="#{{ id }}">{{ label }}</a>{% endfor %}</nav>
</header>
<main>
{% block content %}{% endblock %}
</main>
<footer>Written by anchorfree {{ version }} on {{ written }}. This page is self-contained: it can be moved,
archived or mailed as one file.</footer>
</body>
</html>
"""

MACROS = """{# cells are text, or {"text", "href"} for a link #}
{% macro table(header, rows, caption=None) %}
<table>
{% if caption %}<caption>{{ caption }}</caption>{% endif %}
<thead><tr>{% for cell in header %}<th>{{ cell }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in rows %}<tr>{% for cell in row %}<td{% if cell is numeric %} class="num"{% endif %}>
{%- if cell is mapping %}<a href="{{ cell.href }}">{{ cell.text }}</a>{% else %}{{ cell }}{% endif -%}
</td>{% endfor %}</tr>
{% endfor %}
</tbody>
</table>
{% endmacro %}

{% macro figure(fig) %}
<figure><img src="{{ fig.uri }}" alt="{{ fig.alt }}">
{%- if fig.caption %}<figcaption>{{ fig.caption }}</figcaption>{% endif %}</figure>
{% endmacro %}

{% macro notes(items, kind="") %}
{% for text in items %}<p class="note {{ kind }}">{{ text }}</p>
{% endfor %}
{% endmacro %}

{% macro facts(items) %}
<dl class="facts">{% for name, value in items %}<div><dt>{{ name }}</dt><dd>{{ value }}</dd></div>{% endfor %}</dl>
{% endmacro %}
"""

RUN = """{% extends "base.html" %}
{% import "macros.html" as m %}
{% block content %}
<section id="summary">
<h2>Summary</h2>
{{ m.facts(facts) }}
{{ m.notes(notes) }}
</section>

<section id="config">
<h2>Config</h2>
{% if config_text %}
<details><summary>config.yaml: the resolved config of the run ({{ config_text.count("\\n") + 1 }} lines)</summary>
<pre>{{ config_text }}</pre>
</details>
{% else %}
{{ m.notes(["This folder has no config.yaml."]) }}
{% endif %}
</section>

<section id="metrics">
<h2>Metrics</h2>
{% if metrics_tables %}
<div class="tables">
{% for t in metrics_tables %}{{ m.table(t.header, t.rows, t.caption) }}{% endfor %}
</div>
{% if per_class %}
<h3>Per class</h3>
{{ m.table(per_class.header, per_class.rows) }}
{% endif %}
{% else %}
{{ m.notes(["No metrics: this folder has no metrics.json and no detections were given to evaluate."]) }}
{% endif %}
</section>

<section id="training">
<h2>Training curves</h2>
{% if training_figures %}
<div class="figures">{% for fig in training_figures %}{{ m.figure(fig) }}{% endfor %}</div>
{% else %}
{{ m.notes([training_note]) }}
{% endif %}
</section>

<section id="pr">
<h2>Precision–recall curves</h2>
{% if pr_figure %}
{{ m.figure(pr_figure) }}
{% else %}
{{ m.notes([analysis_note]) }}
{% endif %}
</section>

<section id="confusion">
<h2>Confusion matrix</h2>
{% if confusion %}
{{ m.figure(confusion.figure) }}
<details><summary>The counts as a table</summary>
{{ m.table(confusion.header, confusion.rows) }}
</details>
{% else %}
{{ m.notes([analysis_note]) }}
{% endif %}
</section>

<section id="gallery">
<h2>Worst images first</h2>
{% if gallery %}
<p class="legend">Ground truth on the left, detections with score ≥ {{ score_thresh }} on the right.
<span><i class="swatch" style="border-color:#2ca02c"></i>found / correct</span>
<span><i class="swatch" style="border-color:#ff7f0e"></i>wrong class</span>
<span><i class="swatch" style="border-color:#d62728"></i>missed / false</span>
<span><i class="swatch" style="border-color:#7f7f7f"></i>crowd region / ignored</span></p>
{% for item in gallery %}
<div class="gallery-item">
<h3>{{ item.title }}</h3>
{% if item.error %}{{ m.notes([item.error], "warning") }}{% else %}
<div class="pair">{{ m.figure(item.gt) }}{{ m.figure(item.pred) }}</div>
{% endif %}
</div>
{% endfor %}
{% else %}
{{ m.notes([analysis_note]) }}
{% endif %}
</section>

<section id="next">
<h2>Next</h2>
<pre>{% for line in next_steps %}{{ line }}
{% endfor %}</pre>
</section>
{% endblock %}
"""

COMPARE = """{% extends "base.html" %}
{% import "macros.html" as m %}
{% block content %}
<section id="table">
<h2>Models</h2>
{% if rows %}
{{ m.table(header, rows) }}
{% else %}
{{ m.notes(["No models were compared yet."]) }}
{% endif %}
{{ m.notes(notes) }}
</section>

<section id="plots">
<h2>Accuracy and speed</h2>
{% if figures %}
<div class="figures">{% for fig in figures %}{{ m.figure(fig) }}{% endfor %}</div>
{% else %}
{{ m.notes(["No plot: no model has finished."]) }}
{% endif %}
</section>

<section id="next">
<h2>Next</h2>
<pre>{% for line in next_steps %}{{ line }}
{% endfor %}</pre>
</section>
{% endblock %}
"""

DATASET = """{% extends "base.html" %}
{% import "macros.html" as m %}
{% block content %}
<section id="summary">
<h2>Summary</h2>
{{ m.facts(facts) }}
{{ m.table(stats.header, stats.rows) }}
</section>
{% for split in splits %}
<section id="{{ split.name }}">
<h2>Split “{{ split.name }}”</h2>
<p>{{ split.source }}</p>
{{ m.notes(split.warnings, "warning") }}
<h3>Boxes per class</h3>
<div class="tables">{{ m.table(split.classes.header, split.classes.rows) }}</div>
{% if split.figures %}
<div class="figures">{% for fig in split.figures %}{{ m.figure(fig) }}{% endfor %}</div>
{% endif %}
{% if split.unusual %}
<h3>Boxes to look at</h3>
<p>The smallest and the most elongated boxes: label mistakes often hide here.</p>
<div class="tables">{% for t in split.unusual %}{{ m.table(t.header, t.rows, t.caption) }}{% endfor %}</div>
{% endif %}
{% if split.images %}
<h3>{{ split.images | length }} of {{ split.num_images }} images with their ground truth</h3>
<div class="grid">{% for fig in split.images %}{{ m.figure(fig) }}{% endfor %}</div>
{% endif %}
</section>
{% endfor %}
{% endblock %}
"""

TEMPLATES: dict[str, str] = {
    "base.html": BASE,
    "macros.html": MACROS,
    "run.html": RUN,
    "compare.html": COMPARE,
    "dataset.html": DATASET,
}
"""Template name → source, for :class:`jinja2.DictLoader`."""
