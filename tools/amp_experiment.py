#!/usr/bin/env python3
"""tools/amp_experiment.py — the mixed-precision experiment of IR-specs/training.md.

For each model (the MLP, Wide&Deep, and the deepest example, mlp_deep) and each precision setup
(fp32, bf16, f16, and `auto` with the published `lr-change:HOLD` policy), it trains with `ttfc
train` under a step learning-rate schedule (two drops) on the built-in synthetic data
(tools/gen_data.py), and reports:
  - the final training loss (mean of the last 10% of steps),
  - the evaluation loss and metric (accuracy or AUC),
  - the steps in each precision and the skipped updates,
  - the step time (median of the steps/s the metrics report).
It writes OUT/results.json, OUT/summary.md, each run's metrics, and two pictures per model:
OUT/MODEL-curves.png (the smoothed training loss of every setup, the auto run's fp32 steps
shaded) and OUT/MODEL-auto.png (`tools/plot curves` of the auto run: the published-style picture).

  tools/amp_experiment.py --out out/amp-experiment            # the experiment in IR-specs
  tools/amp_experiment.py --smoke --out /tmp/amp-smoke        # a minute: few steps
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODELS = {
    # name: (example, data set, metric)
    "mlp": ("examples/mlp.ttir", "classification", "accuracy"),
    "wide_deep": ("examples/wide_deep.ttir", "ctr", "auc"),
    "mlp_deep": ("examples/mlp_deep.ttir", "classification", "accuracy"),
}
SETUPS = ["fp32", "bf16", "f16", "auto"]


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def default_ttfc():
    try:
        path = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        fail("cannot find ttfc: build it (swift build -c release --product ttfc) or pass --ttfc PATH")
    return os.path.join(path, "ttfc")


def read_metrics(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def run_one(ttfc, model, setup, data_dir, args, out):
    example, dataset, metric = MODELS[model]
    metrics = os.path.join(out, f"{model}-{setup}.jsonl")
    if os.path.exists(metrics):
        os.remove(metrics)
    open(metrics, "w").close()
    every = max(1, args.steps // 3)
    command = [ttfc, "train", os.path.join(ROOT, example), "--data", os.path.join(data_dir, f"{dataset}_train.npz"),
               "--eval-data", os.path.join(data_dir, f"{dataset}_eval.npz"), "--steps", str(args.steps),
               "--batch", str(args.batch), "--lr", str(args.lr), "--schedule", f"step:{every}:0.1",
               "--eval-every", str(max(1, args.steps // 6)), "--metrics", metrics, "--seed", str(args.seed)]
    if setup == "auto":
        command += ["--precision", "auto", "--precision-policy", f"lr-change:{args.hold}"]
    else:
        command += ["--precision", setup]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.monotonic() - start
    with open(os.path.join(out, f"{model}-{setup}.log"), "w") as f:
        f.write("$ " + " ".join(command) + "\n" + done.stdout + done.stderr)
    if done.returncode != 0:
        fail(f"{model} {setup} failed (exit {done.returncode}); see {out}/{model}-{setup}.log")
    rows = read_metrics(metrics)
    steps = [r for r in rows if "loss" in r and not r.get("eval") and not r.get("skipped")]
    evals = [r for r in rows if r.get("eval")]
    tail = steps[-max(1, len(steps) // 10):]
    precision = {}
    for r in rows:
        if not r.get("eval") and "step" in r:
            precision[r.get("precision", "fp32")] = precision.get(r.get("precision", "fp32"), 0) + 1
    rates = sorted(r["steps_per_second"] for r in steps[len(steps) // 10:] if r.get("steps_per_second"))
    return {
        "model": model, "setup": setup, "steps": len(steps) + sum(1 for r in rows if r.get("skipped")),
        "final_loss": sum(r["loss"] for r in tail) / len(tail),
        "eval_loss": evals[-1].get("eval_loss") if evals else None,
        "metric": metric, "eval_metric": evals[-1].get("eval_" + metric) if evals else None,
        "precision_steps": precision, "skipped": sum(1 for r in rows if r.get("skipped")),
        # steps/s is cumulative in the metrics; the last value is the run's mean rate.
        "ms_per_step": 1000 / steps[-1]["steps_per_second"] if steps and steps[-1].get("steps_per_second") else None,
        "wall_seconds": seconds, "metrics": os.path.basename(metrics),
    }


def picture(model, results, out, hold):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        fail("matplotlib is missing: run tools/setup and use .venv/bin/python")
    fig, ax = plt.subplots(figsize=(10, 5))
    colors = {"fp32": "#1f5fa8", "bf16": "#d0622a", "f16": "#5a9e4b", "auto": "#8e5ba8"}
    auto_rows = None
    for r in results:
        rows = read_metrics(os.path.join(out, r["metrics"]))
        steps = [x for x in rows if "loss" in x and not x.get("eval") and not x.get("skipped")]
        window = max(1, len(steps) // 40)
        xs, ys = [], []
        for i in range(len(steps)):
            part = [s["loss"] for s in steps[max(0, i - window + 1):i + 1]]
            xs.append(steps[i]["step"])
            ys.append(sum(part) / len(part))
        label = r["setup"] if r["setup"] != "auto" else f"auto (lr-change:{hold})"
        ax.plot(xs, ys, color=colors[r["setup"]], linewidth=1.4, label=f"{label}: final {r['final_loss']:.4f}")
        if r["setup"] == "auto":
            auto_rows = rows
    if auto_rows:
        full = sorted(x["step"] for x in auto_rows if x.get("precision") == "fp32" and not x.get("eval"))
        start = prev = None
        for s in full + [None]:
            if s is not None and prev is not None and s == prev + 1:
                prev = s
                continue
            if start is not None:
                ax.axvspan(start - 0.5, prev + 0.5, color="#f2c14e", alpha=0.35, linewidth=0)
            start = prev = s
        ax.fill_between([], [], color="#f2c14e", alpha=0.35, label=f"auto: fp32 steps ({len(full)})")
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss ({max(1, results[0]['steps'] // 40)}-step mean)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.set_title(f"{model}: training loss per precision setup, step schedule (x0.1 twice); shaded: the auto run's fp32 steps", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, f"{model}-curves.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    subprocess.run([os.path.join(ROOT, "tools", "plot"), "curves", os.path.join(out, f"{model}-auto.jsonl"),
                    "-o", os.path.join(out, f"{model}-auto.png"), "--title", f"{model}, --precision auto (lr-change:{hold})"],
                   check=True, capture_output=True)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ttfc", help="the ttfc binary (default: the release build)")
    parser.add_argument("--models", default="mlp,wide_deep,mlp_deep")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--hold", type=int, default=100)
    parser.add_argument("--examples", type=int, default=16384, help="examples generated (80%% train, 20%% eval)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="60 steps, 2048 examples, hold 10")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.examples, args.hold = 60, 2048, 10
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in MODELS:
            fail(f"unknown model '{m}' (models: {', '.join(MODELS)})")
    ttfc = args.ttfc or default_ttfc()
    if not os.access(ttfc, os.X_OK):
        fail(f"ttfc '{ttfc}' is not an executable")
    os.makedirs(args.out, exist_ok=True)
    data_dir = os.path.join(args.out, "data")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_data.py"), "--examples", str(args.examples), data_dir],
                   check=True, capture_output=True)
    results = []
    for model in models:
        per_model = []
        for setup in SETUPS:
            r = run_one(ttfc, model, setup, data_dir, args, args.out)
            print(f"  {model:10s} {setup:5s} final loss {r['final_loss']:.5f}  eval {r['metric']} {r['eval_metric']}  "
                  f"steps {r['precision_steps']}  skipped {r['skipped']}  {r['ms_per_step']:.3f} ms/step", flush=True)
            per_model.append(r)
        picture(model, per_model, args.out, args.hold)
        results += per_model
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"settings": vars(args), "results": results}, f, indent=1)
    lines = [f"{args.steps} steps, batch {args.batch}, Adam lr {args.lr}, schedule step:{max(1, args.steps // 3)}:0.1, "
             f"seed {args.seed}, {args.examples} examples (80% train); auto = --precision auto --precision-policy lr-change:{args.hold}", "",
             "| model | setup | final training loss | eval loss | eval metric | steps fp32 / half | skipped | ms per step |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        half = sum(v for k, v in r["precision_steps"].items() if k != "fp32")
        metric = f"{r['metric']} {r['eval_metric']:.4f}" if r["eval_metric"] is not None else "-"
        eval_loss = f"{r['eval_loss']:.4f}" if r["eval_loss"] is not None else "-"
        lines.append(f"| {r['model']} | {r['setup']} | {r['final_loss']:.4f} | {eval_loss} | {metric} | "
                     f"{r['precision_steps'].get('fp32', 0)} / {half} | {r['skipped']} | {r['ms_per_step']:.3f} |")
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out}/results.json, summary.md and the pictures")


if __name__ == "__main__":
    main()
