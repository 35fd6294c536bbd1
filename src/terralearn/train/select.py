"""Model selection from the data: what ``terralearn train`` does by default (``--model auto``).

Few labels are the normal case: a handful of polygons per class, a few hundred labelled
pixels. A 14 M-parameter U-Net trained from scratch on them loses to a per-pixel random
forest. So the default tries a small set of candidates that fit few labels, and keeps the
one that predicts *polygons it never saw* best:

* ``random_forest``: per-pixel spectra only (the classical baseline);
* ``cnn_s`` / ``cnn_m``: small dilated CNNs at full resolution (receptive fields of 15 and
  31 pixels, a few tens of thousands of weights) that add texture and context to the spectra.
  ``cnn_s`` trains with pieces of other polygons pasted into its crops (``models.augment.cutmix``):
  labelled class boundaries that polygons drawn inside homogeneous areas never give, so its maps keep
  sharp edges and thin features; ``cnn_m`` trains without them and leans more on a wide context.

Each candidate is scored by spatially grouped k-fold cross-validation on the chip set put
back together as scene mosaics (``scene_data``): folds of whole label polygons (connected
patches for raster labels); a class with fewer polygons than folds has its largest one cut
into parts, never dropped (``geo.folds``). Scores are pooled over the folds (every labelled
pixel is predicted once, by a model that did not see its polygon) and the criterion is the
run's monitor (mean IoU by default). A network must beat the forest to be chosen.

The chosen candidate is then refitted on every label with the same settings and number of
steps, and shipped. The reported accuracy is the cross-validated one, never the refit's
accuracy on its own training labels. Networks train on random crops of several sizes drawn
around labelled pixels (classes drawn evenly), so they do not learn a chip's borders and
classify with large tiles as well as with chip-sized ones.

The whole selection keeps to a time budget: a short timing of each network sets the number
of training steps so that cross-validation and the refit fit in it; networks that do not fit
are left out (said in the leaderboard), and a hard deadline stops any overrun. With fixed ``steps``
(``--steps``) nothing is timed or left out: the same data give the same models on any machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from terralearn.config import CANDIDATES, UNLABELLED
from terralearn.geo.folds import make_fold_map
from terralearn.geo.metrics import confusion_matrix, headline, metrics_from_confusion
from terralearn.models.augment import augment_batch, cutmix
from terralearn.models.forest import ForestArrays, predict, train_forest
from terralearn.models.segmentation import build_model
from terralearn.train.diagnostics import METRIC_WORDS
from terralearn.train.scenes import SceneData

CANDIDATE_LABELS = {
    "random_forest": "random forest (per pixel)",
    "cnn_s": "small CNN (15-px context, pasted boundaries)",
    "cnn_m": "small CNN (31-px context)",
}
#: Training steps of a network (batches of crops), fewer when the time budget asks for it.
STEPS = 600
MIN_STEPS = 150
BATCH = 16
CROP_SIZES = (24, 32, 48, 64)
LEARNING_RATE = 3e-3
AUGMENT = ["flip", "rot90", "jitter"]
#: Share of each candidate's crops that get labelled pixels of another crop pasted in (labelled class
#: boundaries). Measured in-process (README, few-labels benchmark notes): on the sample scene it lifts the whole-map
#: accuracy of cnn_s from 0.82-0.84 to 0.89-0.91 (pixels within 2 px of a boundary 0.65 -> 0.80); on the
#: Landsat protocol it costs one 9-px held-out polygon that only a wide context gets right, so cnn_m keeps none.
CUTMIX = {"cnn_s": 1.0, "cnn_m": 0.0}
#: Tile side classify uses by default for a selected network (trained on crops of many sizes; see tile tests).
NETWORK_TILE = 256
#: Share of the remaining budget planned for the networks; the rest is margin (evaluation, packaging).
PLAN_SHARE = 0.8
#: How much faster a network may step in a warm process than in its first timing (time_networks stops early).
WARM_GAIN = 3.0
#: A floor on a network's seconds per step (small CNNs step in 0.06-0.25 s on the 2-core CPUs measured): a budget
#: that the networks cannot fit even at this speed is not spent on timing them.
FASTEST_STEP = 0.01

#: Memory layout of the networks while they train (they are returned in the usual contiguous layout).
LAYOUT = torch.channels_last

Event = Callable[[dict], None]


@dataclass
class CandidateScore:
    name: str
    status: str = "scored"  # scored | skipped | stopped
    note: str = ""
    cm: np.ndarray | None = None
    fold_cms: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0
    steps: int | None = None


@dataclass
class Selection:
    chosen: str
    criterion: str
    folds: int
    leaderboard: list[dict]
    metrics: dict
    baseline: dict | None
    reason: str
    steps: int | None
    seconds: float
    refit_seconds: float
    network: torch.nn.Module | None = None
    forest: ForestArrays | None = None
    fold_summary: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- data views
def pixels(scene: SceneData, labels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(n, bands) spectra and (n,) classes of the labelled pixels of ``labels`` (one array per mosaic)."""
    xs, ys = [], []
    for mosaic, lab in zip(scene.mosaics, labels, strict=True):
        mask = lab != UNLABELLED
        xs.append(mosaic.image[:, mask].T)
        ys.append(lab[mask])
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


def fold_labels(scene: SceneData, fold_maps: list[np.ndarray], fold: int, keep: bool) -> list[np.ndarray]:
    """The labels of one fold (``keep``) or of all other folds; 255 elsewhere."""
    out = []
    for mosaic, fm in zip(scene.mosaics, fold_maps, strict=True):
        inside = fm == fold if keep else (fm != fold) & (fm >= 0)
        out.append(np.where(inside, mosaic.labels, UNLABELLED).astype(np.uint8))
    return out


class CropSampler:
    """Random crops around labelled pixels: a class drawn evenly, then one of its pixels, then a crop holding it."""

    def __init__(self, scene: SceneData, labels: list[np.ndarray], seed: int) -> None:
        self.images = [torch.from_numpy(m.image) for m in scene.mosaics]
        self.labels = [torch.from_numpy(lab.astype(np.int64)) for lab in labels]
        self.rng = np.random.default_rng(seed)
        self.where: list[np.ndarray] = []  # per class: (n, 3) mosaic, row, col
        for c in range(scene.n_classes):
            parts = []
            for i, lab in enumerate(labels):
                r, col = np.nonzero(lab == c)
                if len(r):
                    parts.append(np.column_stack([np.full(len(r), i), r, col]))
            if parts:
                self.where.append(np.concatenate(parts))
        side = min(min(m.image.shape[1:]) for m in scene.mosaics)
        self.sizes = [s for s in CROP_SIZES if s <= side] or [side]

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = int(self.rng.choice(self.sizes))
        xs, ys = [], []
        for _ in range(n):
            pool = self.where[int(self.rng.integers(len(self.where)))]
            i, r, c = pool[int(self.rng.integers(len(pool)))]
            img, lab = self.images[i], self.labels[i]
            h, w = lab.shape
            r0 = int(np.clip(r - self.rng.integers(s), 0, h - s))
            c0 = int(np.clip(c - self.rng.integers(s), 0, w - s))
            xs.append(img[:, r0 : r0 + s, c0 : c0 + s])
            ys.append(lab[r0 : r0 + s, c0 : c0 + s])
        return torch.stack(xs), torch.stack(ys)


# ---------------------------------------------------------------------------------------------- networks
def fit_network(
    architecture: str,
    scene: SceneData,
    labels: list[np.ndarray],
    steps: int,
    seed: int,
    device: torch.device,
    deadline: float | None = None,
) -> tuple[torch.nn.Module, int]:
    """Train a small CNN on crops of the mosaics' ``labels``; returns the model (eval mode) and the steps run."""  # fmt: skip
    torch.manual_seed(seed)
    # channels-last: a training step is 1.3-1.9x faster on CPU (the convolutions' backward pass; 2 cores)
    model = build_model(architecture, "", len(scene.band_names), scene.n_classes).to(device, memory_format=LAYOUT)
    sampler = CropSampler(scene, labels, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    # one cycle with a 30 % warm-up: no loss spike in the first steps
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=max(steps, 2), pct_start=0.3)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=UNLABELLED)
    model.train()
    done = 0
    for _ in range(steps):
        if deadline is not None and time.perf_counter() > deadline:
            break
        x, y = sampler.batch(BATCH)
        x, y = augment_batch(x, y, AUGMENT, gen)
        x, y = cutmix(x, y, CUTMIX.get(architecture, 0.0), gen)
        loss = loss_fn(model(x.to(device, memory_format=LAYOUT)), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        done += 1
    model.eval()
    return model.to(memory_format=torch.contiguous_format), done


@torch.no_grad()
def predict_mosaic(model: torch.nn.Module, image: np.ndarray, device: torch.device, tile: int = 512) -> np.ndarray:
    """Class index of every pixel of a (bands, h, w) mosaic, in tiles with a margin of the receptive field."""
    margin = getattr(model, "receptive_field", 31) // 2 + 1
    _, h, w = image.shape
    out = np.empty((h, w), dtype=np.uint8)
    x = torch.from_numpy(image)
    for r in range(0, h, tile):
        for c in range(0, w, tile):
            r0, c0 = max(0, r - margin), max(0, c - margin)
            r1, c1 = min(h, r + tile + margin), min(w, c + tile + margin)
            logits = model(x[None, :, r0:r1, c0:c1].to(device))[0]
            pred = logits.argmax(0).cpu().numpy().astype(np.uint8)
            th, tw = min(tile, h - r), min(tile, w - c)
            out[r : r + th, c : c + tw] = pred[r - r0 : r - r0 + th, c - c0 : c - c0 + tw]
    return out


def seconds_per_step(architecture: str, scene: SceneData, device: torch.device, steps: int = 6) -> float:
    """Measured time of one training step (after one warm-up step), on the same crops for every network (seed 0)."""
    labels = [m.labels for m in scene.mosaics]
    fit_network(architecture, scene, labels, 1, 0, device)
    t = time.perf_counter()
    fit_network(architecture, scene, labels, steps, 0, device)
    return (time.perf_counter() - t) / steps


def time_networks(
    networks: list[str],
    scene: SceneData,
    device: torch.device,
    rounds: int = 2,
    folds: int = 0,
    deadline: float | None = None,
) -> dict[str, float]:
    """Seconds per step of each network: the fastest of ``rounds`` interleaved timings.

    The first timings of a process are slow (thread pools, allocator, kernels met for the first time) and would
    make whichever network is timed first look dearer than it is, and leave it out; interleaving the rounds and
    keeping the fastest gives each network a warm process. With a ``deadline``, timing stops as soon as no
    network could train in the time left even at a third of its measured cost (a budget far too small on a slow
    machine would otherwise be spent on timing alone); a network not timed then counts as dear as the dearest
    timed one, which the networks' order (cheapest first) makes a lower bound.
    """  # fmt: skip
    best = {n: float("inf") for n in networks}
    for _ in range(rounds):
        for n in networks:
            best[n] = min(best[n], seconds_per_step(n, scene, device))
            if deadline is None:
                continue
            timed = {m: s for m, s in best.items() if s != float("inf")}
            if not plan({m: s / WARM_GAIN for m, s in timed.items()}, folds, deadline - time.perf_counter())[0]:
                dearest = max(timed.values())
                return {m: s if s != float("inf") else dearest for m, s in best.items()}
    return best


def plan(
    spc: dict[str, float], folds: int, seconds_left: float, max_steps: int = STEPS
) -> tuple[list[str], int | None, list[str]]:
    """The networks that fit the time left, with the number of steps each trains; those left out (pure).

    Every network trains ``folds`` times for cross-validation, and the chosen one once more on all labels.
    Steps are lowered, down to MIN_STEPS, before the most expensive network is left out.
    """
    names = sorted(spc, key=lambda n: spc[n])
    dropped: list[str] = []
    while names:
        per_step = sum(spc[n] for n in names) * folds + max(spc[n] for n in names)
        steps = int(PLAN_SHARE * seconds_left / per_step) if per_step > 0 else max_steps
        if steps >= min(MIN_STEPS, max_steps):
            return names, min(max_steps, steps), dropped
        dropped.append(names.pop())
    return [], None, dropped


def _plan_networks(networks: list[str], scene: SceneData, device: torch.device, folds: int, deadline: float,
                   max_steps: int, scores: dict, criterion: str, notify: Event) -> int | None:  # fmt: skip
    """Time the networks and plan their steps within the deadline; those left out are recorded in ``scores``."""
    spc = {n: FASTEST_STEP for n in networks}  # a budget that even this cannot fit is not spent on timing
    if plan(spc, folds, deadline - time.perf_counter(), max_steps)[0]:
        notify({"stage": "timing", "candidates": networks})
        spc = time_networks(list(networks), scene, device, folds=folds, deadline=deadline)
    left = deadline - time.perf_counter()
    kept, steps, dropped = plan(spc, folds, left, max_steps)
    for n in dropped:
        with_it = [*kept, n]
        need = (sum(spc[m] for m in with_it) * folds + max(spc[m] for m in with_it)) * MIN_STEPS / PLAN_SHARE
        scores[n] = CandidateScore(n, status="skipped", note=f"left out to keep to the time budget: with it, "
                                   f"the networks need about {need:.0f} s of the {left:.0f} s left; "
                                   "raise --time-budget, or set --steps, to try it")  # fmt: skip
        notify({"stage": "scored", "candidate": n, "label": CANDIDATE_LABELS.get(n, n), "score": None,
                "criterion": criterion, "seconds": 0.0, "status": "skipped", "note": scores[n].note})  # fmt: skip
    return steps


# ---------------------------------------------------------------------------------------------- selection
def _row(score: CandidateScore, names: list[str], criterion: str) -> dict:
    row = {"candidate": score.name, "label": CANDIDATE_LABELS.get(score.name, score.name), "status": score.status,
           "note": score.note, "seconds": round(score.seconds, 1), "steps": score.steps}  # fmt: skip
    if score.cm is not None:
        pooled = metrics_from_confusion(score.cm, names)
        per_fold = [metrics_from_confusion(cm, names) for cm in score.fold_cms]
        row.update(headline(pooled))
        for key in ("accuracy", "mean_iou"):
            values = [m[key] for m in per_fold if m.get(key) is not None]
            row[f"{key}_spread"] = float(np.std(values)) if len(values) > 1 else None
        row["score"] = pooled.get(criterion)
    return row


def select_model(
    scene: SceneData,
    folds: int = 3,
    time_budget: float = 600.0,
    trees: int = 100,
    seed: int = 0,
    device: torch.device | None = None,
    criterion: str = "mean_iou",
    candidates: tuple[str, ...] = CANDIDATES,
    on_event: Event | None = None,
    steps: int | None = None,
) -> Selection:
    """Cross-validate the candidates, choose one, refit it on every label; see the module documentation.

    ``steps`` fixes each network's training steps (no timing, every candidate tried: the same models on every
    machine; the deadline only stops an overrun); without it they come from the time budget, at most STEPS.
    """
    t0 = time.perf_counter()
    deadline = t0 + time_budget
    device = device or torch.device("cpu")
    notify = on_event or (lambda event: None)
    names = [c["name"] for c in scene.classes]
    k = scene.n_classes
    fold_maps, fold_summary = make_fold_map([m.labels for m in scene.mosaics], k, folds)
    scores: dict[str, CandidateScore] = {}

    def cross_validate(name: str, fit: Callable[[list[np.ndarray], int], Callable[[np.ndarray], np.ndarray]],
                       steps: int | None = None) -> None:  # fmt: skip
        score = CandidateScore(name, steps=steps, cm=np.zeros((k, k), dtype=np.int64))
        t = time.perf_counter()
        for f in range(folds):
            held = fold_labels(scene, fold_maps, f, keep=True)
            if not any((h != UNLABELLED).any() for h in held):
                continue
            notify({"stage": "cv", "candidate": name, "fold": f + 1, "folds": folds})
            predictor = fit(fold_labels(scene, fold_maps, f, keep=False), f)
            if predictor is None:
                score.status, score.note = "stopped", "stopped by the time budget"
                break
            cm = np.zeros((k, k), dtype=np.int64)
            for mosaic, h in zip(scene.mosaics, held, strict=True):
                if (h != UNLABELLED).any():
                    cm += confusion_matrix(h, predictor(mosaic.image), k)
            score.fold_cms.append(cm)
            score.cm += cm
        score.seconds = time.perf_counter() - t
        if score.status != "scored":
            score.cm = None
        scores[name] = score
        value = metrics_from_confusion(score.cm, names).get(criterion) if score.cm is not None else None
        notify({"stage": "scored", "candidate": name, "label": CANDIDATE_LABELS.get(name, name), "score": value,
                "criterion": criterion, "seconds": score.seconds, "status": score.status})  # fmt: skip

    if "random_forest" in candidates:

        def fit_forest(labels, f):
            x, y = pixels(scene, labels)
            forest = train_forest(x, y, k, n_trees=trees, seed=seed + f)
            return lambda image: predict(forest, image.reshape(image.shape[0], -1).T).reshape(image.shape[1:])

        cross_validate("random_forest", fit_forest)

    networks = [c for c in candidates if c != "random_forest"]
    if networks and steps is None:
        steps = _plan_networks(networks, scene, device, folds, deadline, STEPS, scores, criterion, notify)
    for n in [c for c in networks if c not in scores]:  # those the plan kept (a fixed plan keeps all)

        def fit_net(labels, f, n=n):
            model, done = fit_network(n, scene, labels, steps, seed + f, device, deadline)
            if done < steps:
                return None
            return lambda image: predict_mosaic(model, image, device)

        cross_validate(n, fit_net, steps)

    scored = [s for s in scores.values() if s.cm is not None]
    rows = [_row(scores[c], names, criterion) for c in candidates if c in scores]
    forest_row = next((r for r in rows if r["candidate"] == "random_forest" and r.get("score") is not None), None)
    best = None
    for row in rows:
        if row.get("score") is None:
            continue
        if best is None or row["score"] > best["score"]:  # ties keep the earlier (simpler) candidate
            best = row
    if best is None:  # nothing scored (no held-out labels at all): fall back to the forest
        best = {"candidate": "random_forest", "score": None}
    chosen = best["candidate"]
    for row in rows:
        row["chosen"] = row["candidate"] == chosen
    metrics = metrics_from_confusion(scores[chosen].cm, names) if chosen in scores and scores[chosen].cm is not None \
        else metrics_from_confusion(np.zeros((k, k), dtype=np.int64), names)  # fmt: skip
    reason = _reason(scene, chosen, best, forest_row, criterion, len(scored), folds)

    notify({"stage": "refit", "candidate": chosen})
    t_refit = time.perf_counter()
    labels = [m.labels for m in scene.mosaics]
    network = forest = None
    if chosen == "random_forest":
        x, y = pixels(scene, labels)
        forest = train_forest(x, y, k, n_trees=trees, seed=seed)
    else:
        network, _ = fit_network(chosen, scene, labels, steps, seed, device, t0 + 1.05 * time_budget)
        network = network.cpu()
    refit_seconds = time.perf_counter() - t_refit
    forest_cm = scores["random_forest"].cm if "random_forest" in scores else None
    baseline = headline(metrics_from_confusion(forest_cm, names)) if forest_cm is not None else None
    notes, warnings = data_notes(names, fold_summary, folds)
    return Selection(chosen, criterion, folds, rows, metrics, baseline, reason, steps if network is not None else None,
                     time.perf_counter() - t0, refit_seconds, network, forest,
                     {names[c]: v for c, v in fold_summary.items()}, notes, warnings)  # fmt: skip


def data_notes(names: list[str], fold_summary: dict, folds: int) -> tuple[list[str], list[dict]]:
    """What the polygons allow, in plain words: notes for the report, warnings for classes with 1-2 polygons."""
    notes, warnings = [], []
    for c, info in fold_summary.items():
        n, name = info["groups"], names[c]
        if n == 0:
            continue
        if n == 1:
            warnings.append({"code": "one_polygon", "message": f"{name} has 1 polygon: for cross-validation it was "
                             f"cut into {folds} parts, so its held-out estimates come from other parts of the same "
                             "polygon and are optimistic.", "fix": f"Draw at least {folds} separate polygons of "
                             f"{name}, spread over the scene."})  # fmt: skip
        elif n < folds or n == 2:
            warnings.append({"code": "few_polygons", "message": f"{name} has {n} polygons: held-out estimates for "
                             f"it rest on {'one polygon' if n == 2 else 'few polygons'} per fold"
                             + (" (its largest polygon was cut into parts)" if info.get("cut") else "") + ".",
                             "fix": f"Draw more polygons of {name} ({folds + 2} or more), spread over the scene."})  # fmt: skip
    total = sum(i["groups"] for i in fold_summary.values())
    notes.append(f"The labels form {total} separate polygons (or patches); {folds} folds hold out whole ones.")
    return notes, warnings


def _reason(scene: SceneData, chosen: str, best: dict, forest: dict | None, criterion: str, scored: int,
            folds: int) -> str:  # fmt: skip
    """Why this model, in plain words."""
    n = scene.labelled
    label = CANDIDATE_LABELS.get(chosen, chosen)
    crit = METRIC_WORDS.get(criterion, criterion)
    if best.get("score") is None:
        return (f"With {n:,} labelled pixels no candidate could be cross-validated (no fold held labels); "
                f"the {label} was chosen as the safe default.")  # fmt: skip
    text = (f"With {n:,} labelled pixels, {scored} candidates were scored by {folds}-fold cross-validation on "
            f"held-out polygons. The {label} was chosen: its {crit} on polygons it never saw is "
            f"{best['score']:.3f}")  # fmt: skip
    if chosen == "random_forest":
        text += ", and no network beat it: deep learning is not worth it on these labels as they stand."
    elif forest is not None:
        text += (f", against {forest['score']:.3f} for the per-pixel random forest: the network's context "
                 f"(texture, shape, neighbours) helps on this data.")  # fmt: skip
    else:
        text += "."
    if n < 100_000:
        text += (" Large U-Nets were not tried: with fewer than 100,000 labelled pixels a network of millions of "
                 "weights trained from scratch learns the training polygons, not the classes.")  # fmt: skip
    return text


def describe(event: dict) -> str | None:
    """A progress event of ``select_model`` in plain words (for the command line and the job log)."""
    stage = event.get("stage")
    if stage == "cv":
        return f"cross-validating {event['candidate']}: fold {event['fold']}/{event['folds']}"
    if stage == "timing":
        return f"timing {', '.join(event['candidates'])} to fit the time budget"
    if stage == "scored":
        if event.get("score") is None:
            return f"{event['label']}: {event.get('note') or event['status']}"
        crit = METRIC_WORDS.get(event["criterion"], event["criterion"])
        return f"{event['label']}: CV {crit} {event['score']:.3f} in {event['seconds']:.0f} s"
    if stage == "refit" and "chips" in event:  # a detector: the held-out run chose the epochs
        return (f"refitting {event['candidate']} on every chip ({event['chips']} chips) for the held-out run's "
                f"{event['epochs']} epochs")  # fmt: skip
    if stage == "refit":
        return f"chose {event['candidate']}: refitting it on every label"
    if stage == "refit_epoch":
        return f"refit epoch {event['epoch']:>3}/{event['epochs']}  loss {event['train_loss']:.3f}  {event['seconds']:.1f}s"
    return None
