"""`python -m batch_layer evaluate`: the quality report (Markdown, PNG plots and JSON of the numbers).

Every method is scored on the same seeded split (batch_layer.quality): popularity; the seed
project's projection fold-in and exact fold-in on explicit ALS; exact fold-in on implicit ALS with
the configured settings (the default); EASE. Settings are compared, and the serving layer's
controls chosen, on the validation readers; the test readers are scored once per method.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np

from batch_layer import quality
from batch_layer.quality import Case, CatalogStats, Ratings, Scorer, Split
from batch_layer.stages import stage
from readnext.config import Config
from readnext.foldin import FoldInParams
from readnext.rerank import rerank, scaled_popularity

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)
PENALTIES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
MAX_PER_AUTHOR = (0, 3, 2, 1)
RERANK_DEPTH = 100
METRICS = ("ndcg", "recall", "map", "coverage", "popularity_percentile", "dominated_share")


def read_books(path: Path | None, id_col: str) -> dict[int, tuple[str, str]] | None:
    """Item id → (title, authors) from a metadata CSV, for the author and series metrics."""
    if path is None:
        return None
    books = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                books[int(row.get(id_col) or row["book_id"])] = (row.get("title") or "", row.get("authors") or "")
            except (KeyError, ValueError):
                continue
    return books


class Timer:
    """Runs each step as a logged stage (batch_layer.stages) and keeps its duration for the report."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    def run(self, name: str, work: Any, *args: Any) -> Any:
        start = time.monotonic()
        with stage(name):
            result = work(*args)
        self.steps[name] = round(time.monotonic() - start, 1)
        return result


def _score(scorer: Scorer, cases: list[Case], catalog: CatalogStats, k: int) -> tuple[dict[str, float], np.ndarray]:
    """The metrics of the readers' top-k lists, and every item row shown."""
    lists = [items for items, _ in quality.recommend_lists(scorer, cases, k)]
    shown = np.concatenate(lists) if lists else np.zeros(0, dtype=np.int64)
    return quality.list_metrics(lists, cases, catalog, k), shown


def _popularity_histograms(counts: np.ndarray, shown: dict[str, np.ndarray], bins: int = 20) -> dict[str, Any]:
    """Share of the catalog, and of each method's recommendations, per bin of log10(1 + ratings)."""
    values = np.log10(1 + counts)
    edges = np.linspace(0, values.max(initial=0) + 1e-9, bins + 1)
    share = lambda v: (np.histogram(v, edges)[0] / max(len(v), 1)).tolist()  # noqa: E731
    return {
        "edges_log10": edges.tolist(),
        "catalog": share(values),
        "recommended": {name: share(values[rows]) for name, rows in shown.items()},
    }


def _controls(scorer: Scorer, split: Split, catalog: CatalogStats, k: int) -> list[dict[str, float]]:
    """NDCG and coverage on the validation readers for each popularity penalty and author limit."""
    counts = split.counts()
    popularity = scaled_popularity(counts, counts.max(initial=0))
    authors = catalog.authors()
    ranked = quality.recommend_lists(scorer, split.validation, RERANK_DEPTH)
    rows = []
    for penalty in PENALTIES:
        for per_author in MAX_PER_AUTHOR:
            lists = [
                rerank(ids, s, popularity[ids], [authors[i] for i in ids], penalty, per_author)[0] for ids, s in ranked
            ]
            metrics = quality.list_metrics(lists, split.validation, catalog, k)
            rows.append({"popularity_penalty": penalty, "max_per_author": per_author, **metrics})
    return rows


def choose_controls(
    rows: list[dict[str, float]], k: int, tolerance: float = 0.02, max_dominated: float = 0.01
) -> dict[str, float]:
    """The widest catalog coverage with NDCG within `tolerance` (relative) of the best, among the
    settings whose lists are (almost) never dominated by one author or series, if any are."""
    best = max(r[f"ndcg@{k}"] for r in rows)
    close = [r for r in rows if r[f"ndcg@{k}"] >= (1 - tolerance) * best]
    varied = [r for r in close if r["dominated_share"] <= max_dominated]
    return max(varied or close, key=lambda r: (r["coverage"], r[f"ndcg@{k}"]))


def build_report(
    spark: SparkSession,
    config: Config,
    data: Ratings,
    books: dict[int, tuple[str, str]] | None,
    ranks: list[int],
    regs: list[float],
    source: str,
) -> dict[str, Any]:
    """Every number of the report, as JSON-ready data."""
    qc, ev, model, k = config.quality, config.evaluation, config.model, config.evaluation.k
    timer = Timer()
    split = timer.run("split", quality.split_for, data, config)
    catalog = CatalogStats.build(split, books)
    results: dict[str, dict[str, dict[str, float]]] = {}
    shown: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="readnext-evaluate-") as folder:

        def fit(settings: dict[str, Any]) -> tuple[np.ndarray, FoldInParams]:
            trial = dataclasses.replace(model, **settings)
            factors = timer.run(
                f"ALS fit {settings or 'default'}", quality.als_item_factors, spark, split, trial, Path(folder)
            )
            return factors, FoldInParams.from_config(trial)

        def score_all(name: str, scorer: Scorer) -> None:
            new, shown[name] = _score(scorer, split.test, catalog, k)
            results[name] = {"a_new_readers": new, "b_known_readers": _score(scorer, split.known, catalog, k)[0]}
            log.info("%s: protocol (a) ndcg@%d %.4f", name, k, results[name]["a_new_readers"][f"ndcg@{k}"])

        score_all("popularity", quality.popularity_scorer(split))
        explicit, explicit_params = fit({"feedback": "explicit", "reg": qc.explicit_reg})
        score_all("seed: explicit ALS + projection", quality.projection_scorer(explicit))
        score_all("explicit ALS + exact fold-in", quality.foldin_scorer(explicit, explicit_params))
        default_factors, default_params = fit({})
        default_scorer = quality.foldin_scorer(default_factors, default_params)
        score_all("implicit ALS + exact fold-in (default)", default_scorer)
        ease = timer.run("EASE fit", quality.ease_scorer, split, qc.ease_lambda)
        score_all(f"EASE (λ = {qc.ease_lambda:g})", ease)

        sweep = []
        trials = [(r, model.reg) for r in ranks] + [(model.rank, g) for g in regs]
        for rank, reg in dict.fromkeys(trials):
            if (rank, reg) == (model.rank, model.reg):
                scorer = default_scorer
            else:
                scorer = quality.foldin_scorer(*fit({"rank": rank, "reg": reg}))
            sweep.append({"rank": rank, "reg": reg, **_score(scorer, split.validation, catalog, k)[0]})
        controls = timer.run("controls", _controls, default_scorer, split, catalog, k)
    chosen = choose_controls(controls, k)
    return {
        "source": source,
        "ratings": len(data.users),
        "rejected_rows": data.rejected,
        "readers": int(len(np.unique(data.users))),
        "items": int(len(np.unique(data.items))),
        "catalog": int(len(split.item_ids)),
        "training_ratings": int(len(split.train.users)),
        "readers_scored": {"test": len(split.test), "validation": len(split.validation), "known": len(split.known)},
        "settings": {
            "seed": model.seed,
            "k": k,
            "holdout_readers": ev.reader_share,
            "fold_fraction": ev.fold_fraction,
            "relevant_min_rating": ev.relevant_min_rating,
            "model": dataclasses.asdict(model),
            "explicit_reg": qc.explicit_reg,
            "ease_lambda": qc.ease_lambda,
        },
        "methods": results,
        "sweep": sweep,
        "controls": controls,
        "chosen_controls": {
            "popularity_penalty": chosen["popularity_penalty"],
            "max_per_author": chosen["max_per_author"],
        },
        "popularity": _popularity_histograms(split.counts(), shown),
        "seconds": timer.steps,
    }


def _relevance(min_rating: float) -> str:
    if min_rating <= 1:
        return "Every held-out book is relevant (the reader went on to rate it)."
    return f"A held-out book is relevant when rated {min_rating:g} stars or more."


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _metric_cells(m: dict[str, float], k: int) -> list[str]:
    return [f"{m[f'{name}@{k}']:.4f}" for name in ("ndcg", "recall", "map")] + [
        f"{m['coverage']:.3f}",
        f"{m['popularity_percentile']:.1f}",
        f"{m['dominated_share']:.3f}",
    ]


def _plots(report: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = report["settings"]["k"]
    model = report["settings"]["model"]
    fig, (by_rank, by_reg) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, key, fixed in ((by_rank, "rank", "reg"), (by_reg, "reg", "rank")):
        rows = sorted((r for r in report["sweep"] if r[fixed] == model[fixed]), key=lambda r: r[key])
        axis.plot([r[key] for r in rows], [r[f"ndcg@{k}"] for r in rows], "o-")
        axis.set_xscale("log", base=2 if key == "rank" else 10)
        axis.set_xlabel(f"{key} ({fixed} = {model[fixed]:g})")
        axis.grid(alpha=0.3)
    by_rank.set_ylabel(f"NDCG@{k}, validation readers")
    fig.suptitle("Implicit ALS + exact fold-in: quality against rank and regularisation")
    fig.tight_layout()
    fig.savefig(out / "quality_vs_settings.png", dpi=110)
    plt.close(fig)

    pop = report["popularity"]
    edges = np.array(pop["edges_log10"])
    centres = (edges[:-1] + edges[1:]) / 2
    fig, axis = plt.subplots(figsize=(8, 4.5))
    axis.fill_between(centres, pop["catalog"], step="mid", alpha=0.25, color="grey", label="catalog")
    for name, share in pop["recommended"].items():
        axis.step(centres, share, where="mid", label=name)
    axis.set_xlabel("log10(1 + ratings in training)")
    axis.set_ylabel("share of books")
    axis.set_title("Popularity of recommended books (protocol a) against the catalog")
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "popularity.png", dpi=110)
    plt.close(fig)

    fig, axis = plt.subplots(figsize=(8, 4.5))
    for per_author in MAX_PER_AUTHOR:
        rows = [r for r in report["controls"] if r["max_per_author"] == per_author]
        label = f"at most {per_author} per author" if per_author else "no author limit"
        axis.plot([r["coverage"] for r in rows], [r[f"ndcg@{k}"] for r in rows], "o-", label=label)
        for r in rows:
            axis.annotate(f"{r['popularity_penalty']:g}", (r["coverage"], r[f"ndcg@{k}"]), fontsize=7)
    chosen = report["chosen_controls"]
    point = next(r for r in report["controls"] if all(r[key] == v for key, v in chosen.items()))
    axis.plot(point["coverage"], point[f"ndcg@{k}"], "k*", markersize=14, label="chosen default")
    axis.set_xlabel("catalog coverage")
    axis.set_ylabel(f"NDCG@{k}, validation readers")
    axis.set_title("Popularity penalty (labels) and author limit: quality against coverage")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "controls.png", dpi=110)
    plt.close(fig)


def write_report(report: dict[str, Any], out: Path) -> Path:
    """quality.json, three PNG plots and report.md (which shows them) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    _plots(report, out)
    s, k = report["settings"], report["settings"]["k"]
    header = ["method", f"NDCG@{k}", f"Recall@{k}", f"MAP@{k}", "coverage", "popularity pct.", "dominated lists"]
    methods = report["methods"]
    default = next(name for name in methods if "(default)" in name)
    seed = next(name for name in methods if name.startswith("seed"))
    gain = methods[default]["a_new_readers"][f"ndcg@{k}"] / max(methods[seed]["a_new_readers"][f"ndcg@{k}"], 1e-9)
    model = s["model"]
    settings = ", ".join(f"{key} {model[key]:g}" for key in ("rank", "reg", "alpha", "rating_offset", "iterations"))
    sweep = _table(
        ["rank", "reg", f"NDCG@{k}", "coverage"],
        [[str(r["rank"]), f"{r['reg']:g}", f"{r[f'ndcg@{k}']:.4f}", f"{r['coverage']:.3f}"] for r in report["sweep"]],
    )
    controls = _table(
        ["popularity penalty", "max per author", f"NDCG@{k}", "coverage", "popularity pct.", "dominated lists"],
        [
            [
                f"{r['popularity_penalty']:g}",
                str(r["max_per_author"]),
                *_metric_cells(r, k)[:1],
                *_metric_cells(r, k)[3:],
            ]
            for r in report["controls"]
        ],
    )
    text = _TEMPLATES.get_template("quality_report.md.j2").render(
        report=report,
        s=s,
        k=k,
        settings=settings,
        relevance=_relevance(s["relevant_min_rating"]),
        new_readers=_table(header, [[name, *_metric_cells(m["a_new_readers"], k)] for name, m in methods.items()]),
        known_readers=_table(header, [[name, *_metric_cells(m["b_known_readers"], k)] for name, m in methods.items()]),
        gain=gain,
        sweep=sweep,
        chosen=report["chosen_controls"],
        controls=controls,
        seconds=_table(["step", "seconds"], [[name, f"{t:.1f}"] for name, t in report["seconds"].items()]),
    )
    path = out / "report.md"
    path.write_text(text)
    return path
