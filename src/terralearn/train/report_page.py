"""The page of the training report: one Jinja template (autoescaped), filled in by :mod:`terralearn.train.report`."""

from __future__ import annotations

from terralearn.io.html import FACTS_AND_WARNINGS

TEMPLATE = (
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>TerraLearn run {{ run_id }}{% if name %} – {{ name }}{% endif %}</title>
<style>{{ css }}</style>
</head>
<body>
<main>
<header>
<h1>Run {{ run_id }}{% if name %} · {{ name }}{% endif %}
 <span class="badge {{ status_kind }}">{{ status }}</span></h1>
{% if selection %}<p class="sub">TerraLearn training report. All accuracy figures below are
<b>cross-validated on held-out polygons</b>: every labelled pixel was predicted by a model that never saw its polygon
({{ selection.folds }} folds of whole polygons). The shipped model was then refitted on every label.</p>
{% else %}<p class="sub">TerraLearn training report. All accuracy figures below are measured on the
<b>spatially held-out validation data</b> (areas the model never trained on), not on the training chips.</p>{% endif %}
"""
    + FACTS_AND_WARNINGS
    + """

<section id="accuracy">
<h2>Accuracy on {% if selection %}held-out polygons (cross-validated){% else %}validation data{% endif %}</h2>
{% if headline.rows %}<table>
<tr><th>Metric</th><th class="n">This model</th>{% if headline.baseline_name %}<th class="n">Baseline:
 {{ headline.baseline_name }}</th><th class="n">Difference</th>{% endif %}</tr>
{% for r in headline.rows %}<tr><td>{{ r.label }}</td><td class="n"><b>{{ r.model }}</b></td>
{% if headline.baseline_name %}<td class="n">{{ r.baseline }}</td><td class="n {{ r.trend }}">{{ r.diff }}</td>{% endif %}</tr>
{% endfor %}</table>
{% else %}<p class="note">No validation metrics were recorded for this run.</p>{% endif %}
{% if headline.sentence %}<p class="verdict {{ headline.verdict }}">{{ headline.sentence }}</p>
{% else %}<p class="note">No baseline was trained for this run, so there is nothing to compare the model against.</p>
{% endif %}<p class="note">Scores run from 0 to 1 (higher is better). Overall accuracy counts correct pixels;
Dice and mean IoU average over classes, so rare classes count as much as common ones; kappa discounts chance agreement.</p>
</section>

{% if selection %}<section id="selection">
<h2>Model selection</h2>
<p>{{ selection.reason }}</p>
<div class="tablewrap"><table>
<tr><th>Candidate</th><th class="n">CV {{ selection.criterion }}</th><th class="n">Spread over folds</th>
<th class="n">Overall accuracy</th><th class="n">Time</th><th class="n">Steps</th><th>Status</th></tr>
{% for r in selection.rows %}<tr{% if r.chosen %} class="best"{% endif %}><td>{{ r.label }}{% if r.chosen %}<span
 class="tag best">chosen</span>{% endif %}</td><td class="n">{{ r.score }}</td><td class="n">{{ r.spread }}</td>
<td class="n">{{ r.accuracy }}</td><td class="n">{{ r.seconds }}</td><td class="n">{{ r.steps }}</td>
<td>{{ r.status }}</td></tr>
{% endfor %}</table></div>
{% for n in selection.notes %}<p class="note">{{ n }}</p>
{% endfor %}<p class="note">Each candidate was trained {{ selection.folds }} times, each time without one fold of
whole polygons, and scored on that fold. The CV score pools the held-out predictions; the spread is the standard
deviation of the per-fold scores (a large spread means the estimate rests on few polygons). Time is the
cross-validation's wall time. {{ selection.refit }}</p>
</section>

{% endif %}<section id="training">
<h2>Training curves</h2>
{% if images.loss %}<figure><img src="{{ images.loss }}" alt="Training and validation loss per epoch">
<figcaption>Loss per epoch (lower is better). Validation loss rising while training loss keeps falling means the
model is over-fitting; the dashed line marks the epoch whose weights were kept.</figcaption></figure>
{% endif %}{% if images.metrics %}<figure><img src="{{ images.metrics }}" alt="Validation metrics per epoch">
<figcaption>Validation scores per epoch{% if monitor_word %}; the thick line ({{ monitor_word }}) picked the best
epoch{% endif %}.</figcaption></figure>
{% endif %}{% if not images.loss and not images.metrics %}<p class="note">No per-epoch history was recorded for this
run.</p>{% endif %}
</section>

<section id="classes">
<h2>Accuracy per class</h2>
{% if per_class %}<div class="tablewrap"><table>
<tr><th>Class</th><th class="n">Value</th><th class="n">Precision<br><small>(user's accuracy)</small></th>
<th class="n">Recall<br><small>(producer's accuracy)</small></th><th class="n">F1</th><th class="n">IoU</th>
<th class="n">Support<br><small>(validation pixels)</small></th></tr>
{% for r in per_class %}<tr{% if r.weak %} class="weak"{% endif %}><td><span class="sw" style="background:{{ r.hex }}"></span>
{{- r.name }}{% if r.weak %}<span class="tag weak">weak</span>{% endif %}</td><td class="n">{{ r.value }}</td>
<td class="n">{{ r.precision }}</td><td class="n">{{ r.recall }}</td><td class="n">{{ r.f1 }}</td>
<td class="n">{{ r.iou }}</td><td class="n">{{ r.support }}</td></tr>
{% endfor %}</table></div>
<p class="note">Precision (user's accuracy): of the pixels mapped as the class, the share that really are it.
Recall (producer's accuracy): of the reference pixels of the class, the share that were found.
{% if not class_metrics %}<b>No per-class metrics were recorded for this run.</b>
{% elif n_weak %}<b>{{ n_weak }} weak class{{ "es" if n_weak != 1 else "" }}</b> (highlighted: IoU below {{ weak_iou }}).
{% else %}No class has an IoU below {{ weak_iou }}.{% endif %}</p>
{% else %}<p class="note">No classes or per-class metrics were recorded for this run.</p>{% endif %}
{% if images.confusion %}<figure><img src="{{ images.confusion }}" alt="Confusion matrix">
<figcaption>Confusion matrix of the validation pixels. Rows are the reference (true) class, columns the predicted class;
colours are row shares, so a dark diagonal is good and dark cells off it show which classes are mixed up.
{% if annotated %}Numbers are pixel counts.{% else %}Pixel counts are left out with this many classes.{% endif %}
ArcGIS Pro's <i>Compute Confusion Matrix</i> table is the other way round (its rows are the classified values).
</figcaption></figure>{% endif %}
</section>

<section id="data">
<h2>Training data</h2>
{% if images.class_frequencies %}<figure><img src="{{ images.class_frequencies }}" alt="Pixels per class">
<figcaption>Labelled pixels per class in the training and validation chips. Classes with very few pixels are hard to
learn and their validation scores rest on little evidence.</figcaption></figure>
{% else %}<p class="note">No class pixel counts were recorded for this run.</p>{% endif %}
</section>

<section id="samples">
<h2>Validation samples</h2>
{% if images.samples %}<figure><img src="{{ images.samples }}" alt="Validation chips: image, reference label and prediction">
<figcaption>Validation chips with their reference labels and the model's predictions, in the class colours;
grey pixels are unlabelled.</figcaption></figure>
{% else %}<p class="note">No validation samples were drawn for this report.</p>{% endif %}
</section>

<section id="epochs">
<h2>Epochs</h2>
{% if history_rows %}<div class="tablewrap"><table>
<tr>{% for h in history_header %}<th class="n">{{ h }}</th>{% endfor %}</tr>
{% for r in history_rows %}<tr{% if r.best %} class="best"{% endif %}>{% for c in r.cells %}<td class="n">
{{- c }}{% if loop.first and r.best %}<span class="tag best">best</span>{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table></div>{% else %}<p class="note">No per-epoch history was recorded for this run.</p>{% endif %}
</section>

<section id="settings">
<h2>Settings</h2>
{% if settings %}<table>
{% for k, v in settings %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>
{% endfor %}</table>{% else %}<p class="note">No settings were recorded.</p>{% endif %}
<p class="note">For your run log: select this table and paste it into a spreadsheet.</p>
<div class="tablewrap"><table class="log">
<tr>{% for k, _ in run_log %}<th>{{ k }}</th>{% endfor %}</tr>
<tr>{% for _, v in run_log %}<td>{{ v }}</td>{% endfor %}</tr>
</table></div>
</section>

<footer>Generated by TerraLearn {{ version }} on {{ generated }}.</footer>
</main>
</body>
</html>
"""
)
