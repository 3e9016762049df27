#!/usr/bin/env python3
"""tools/plot — pictures of ttfc runs, written with matplotlib (installed by tools/setup into .venv).

  tools/plot curves METRICS.jsonl [-o curves.png|.svg] [--title T]
      training loss per step (and its moving average), evaluation loss and metrics at the steps
      they were taken, and the learning rate on a second axis; skipped steps marked.
  tools/plot ncf RESULTS.json [-o ncf.png|.svg]
      HR@10 and NDCG@10 per table optimizer: mean over seeds with the spread (min-max) as error
      bars, each seed as a dot beside it (RESULTS.json from `ttfc ncf --results`).

Every error is named and exits 1; nothing is drawn from a file that does not parse.
"""
import argparse
import json
import math
import os
import sys


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def load_jsonl(path):
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    fail(f"{path}:{n}: not a JSON line ({e.msg})")
                if not isinstance(row, dict):
                    fail(f"{path}:{n}: a metrics line must be a JSON object, not {type(row).__name__}")
                rows.append(row)
    except OSError as e:
        fail(f"cannot read '{path}': {e.strerror}")
    except UnicodeDecodeError:
        fail(f"{path}: not UTF-8 text")
    return rows


def pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        fail("matplotlib is missing: run tools/setup (it installs it into .venv) and use .venv/bin/python")


def curves(args):
    rows = load_jsonl(args.metrics)
    train = [r for r in rows if "loss" in r and not r.get("eval") and not r.get("skipped")]
    evals = [r for r in rows if r.get("eval")]
    skipped = [r for r in rows if r.get("skipped")]
    if not train:
        fail(f"{args.metrics} holds no training steps (lines with 'step' and 'loss')")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    steps = [number(r.get("step"), "a step number") for r in train]
    losses = [loss_value(r["loss"], r["step"]) for r in train]
    ax.plot(steps, losses, color="#9ab8d8", linewidth=0.8, label="training loss (per step)")
    window = max(1, len(losses) // 50)
    if window > 1:
        smooth = []
        for i in range(len(losses)):
            part = [x for x in losses[max(0, i - window + 1):i + 1] if math.isfinite(x)]
            smooth.append(sum(part) / len(part) if part else math.nan)
        ax.plot(steps, smooth, color="#1f5fa8", linewidth=1.8, label=f"training loss ({window}-step mean)")
    if evals:
        e_steps = [r["step"] for r in evals if "eval_loss" in r]
        ax.plot(e_steps, [r["eval_loss"] for r in evals if "eval_loss" in r], "o-", color="#d0622a",
                linewidth=1.5, label="evaluation loss")
    # Mixed precision: shade the runs of full-precision steps (the metrics' `precision` field),
    # like the published picture of the adaptive policy.
    precisions = {r["step"]: r["precision"] for r in rows
                  if not r.get("eval") and isinstance(r.get("precision"), str) and isinstance(r.get("step"), int)}
    full_intervals = []
    if precisions and any(p != "fp32" for p in precisions.values()):
        start = None
        for step in sorted(precisions):
            if precisions[step] == "fp32" and start is None:
                start = step
            if precisions[step] != "fp32" and start is not None:
                full_intervals.append((start, step - 1))
                start = None
        if start is not None:
            full_intervals.append((start, max(precisions)))
        for a, b in full_intervals:
            ax.axvspan(a - 0.5, b + 0.5, color="#f2c14e", alpha=0.35, linewidth=0)
        half = sorted({p for p in precisions.values() if p != "fp32"})
        full_steps = sum(1 for p in precisions.values() if p == "fp32")
        ax.fill_between([], [], color="#f2c14e", alpha=0.35,
                        label=f"fp32 steps ({full_steps} of {len(precisions)}; others {'/'.join(half)})")
    for r in skipped:
        ax.axvline(r["step"], color="#cc0000", alpha=0.3, linewidth=0.8)
    if skipped:
        ax.plot([], [], color="#cc0000", alpha=0.5, label=f"skipped steps ({len(skipped)})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if all(x > 0 for x in losses if math.isfinite(x)) and max(losses) / max(min(losses), 1e-30) > 30:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    lr = [(r["step"], r["lr"]) for r in train if "lr" in r]
    handles, labels = ax.get_legend_handles_labels()
    if lr:
        ax2 = ax.twinx()
        ax2.plot([s for s, _ in lr], [v for _, v in lr], color="#5a9e4b", linewidth=1.2, linestyle="--")
        ax2.set_ylabel("learning rate", color="#5a9e4b")
        ax2.tick_params(axis="y", colors="#5a9e4b")
        handles.append(ax2.lines[0])
        labels.append("learning rate")
    metric_text = []
    if evals:
        last = evals[-1]
        for key in sorted(last):
            if key.startswith("eval_") and key != "eval_loss" and isinstance(last[key], (int, float)):
                metric_text.append(f"{key[5:]} {last[key]:.4f}")
    title = args.title or "training"
    if metric_text:
        title += " — final evaluation: " + ", ".join(metric_text)
    ax.set_title(title)
    ax.legend(handles, labels, loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"plot: wrote {args.output} ({len(train)} steps, {len(evals)} evaluations)")


def ncf(args):
    try:
        with open(args.results, encoding="utf-8") as f:
            results = json.load(f)
    except OSError as e:
        fail(f"cannot read '{args.results}': {e.strerror}")
    except UnicodeDecodeError:
        fail(f"{args.results}: not UTF-8 text")
    except json.JSONDecodeError as e:
        fail(f"{args.results}: not JSON ({e.msg})")
    runs = results.get("runs") if isinstance(results, dict) else None
    if not runs or not isinstance(runs, list):
        fail(f"{args.results} holds no runs (write it with `ttfc ncf --results FILE`)")
    for k, r in enumerate(runs):
        if not isinstance(r, dict) or not isinstance(r.get("optimizer"), str):
            fail(f"{args.results}: run {k} has no optimizer name")
        for key in ("hr", "ndcg", "seed"):
            number(r.get(key), f"run {k}'s {key}")
    optimizers = []
    for r in runs:
        if r["optimizer"] not in optimizers:
            optimizers.append(r["optimizer"])
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, key, label in ((axes[0], "hr", "HR@10"), (axes[1], "ndcg", "NDCG@10")):
        for i, name in enumerate(optimizers):
            values = [r[key] for r in runs if r["optimizer"] == name]
            mean = sum(values) / len(values)
            low, high = mean - min(values), max(values) - mean
            color = ["#1f5fa8", "#d0622a", "#5a9e4b", "#8e5ba8", "#a88e2a", "#555555"][i % 6]
            ax.errorbar(i, mean, yerr=[[low], [high]], fmt="s", color=color, markersize=9, capsize=8, linewidth=2)
            ax.scatter([i - 0.12] * len(values), values, color="black", s=14, zorder=3, marker="o")
            ax.text(i + 0.15, mean, f"{mean:.3f}", ha="left", va="center", fontsize=9)
        ax.set_xlim(-0.6, len(optimizers) - 0.4)
        ax.set_xticks(range(len(optimizers)))
        ax.set_xticklabels(optimizers)
        ax.set_ylabel(label)
        values = [r[key] for r in runs]
        spread = max(values) - min(values)
        ax.set_ylim(max(0, min(values) - max(0.02, spread)), min(1, max(values) + max(0.02, spread)))
        ax.grid(axis="y", alpha=0.3)
    seeds = sorted({r["seed"] for r in runs})
    fig.suptitle(f"NeuMF, table optimizers compared (squares: mean over seeds {seeds}; bars: min–max; dots: each seed)")
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"plot: wrote {args.output} ({len(runs)} runs)")


def number(value, what):
    """A finite number from the metrics or results, or a named error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        fail(f"{what} is {value!r}, not a finite number")
    return value


def loss_value(value, step):
    """A loss to draw: non-finite or missing losses leave a gap; anything else not a number is an error."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(f"the loss at step {step} is {value!r}, not a number")
    return value if math.isfinite(value) else math.nan


def main():
    parser = argparse.ArgumentParser(prog="tools/plot", description="Pictures of ttfc runs.")
    sub = parser.add_subparsers(dest="kind", required=True)
    c = sub.add_parser("curves", help="loss and evaluation curves from --metrics JSON lines")
    c.add_argument("metrics")
    c.add_argument("-o", "--output", default="curves.png")
    c.add_argument("--title")
    n = sub.add_parser("ncf", help="HR@10 / NDCG@10 per optimizer from `ttfc ncf --results`")
    n.add_argument("results")
    n.add_argument("-o", "--output", default="ncf.png")
    args = parser.parse_args()
    if not args.output.lower().endswith((".png", ".svg")):
        fail(f"-o {args.output}: the picture must be .png or .svg")
    directory = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(directory):
        fail(f"-o {args.output}: the directory {directory} does not exist")
    if os.path.isdir(args.output):
        fail(f"-o {args.output}: is a directory")
    try:
        (curves if args.kind == "curves" else ncf)(args)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        fail(f"{getattr(args, 'metrics', None) or args.results}: unexpected content ({type(e).__name__}: {e})")
    except OSError as e:
        fail(f"cannot write '{args.output}': {e.strerror}")


if __name__ == "__main__":
    main()
