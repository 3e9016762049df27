#!/usr/bin/env python3
"""tools/ncf_experiment.py — SparseAdam against Adam and LazyAdam on NeuMF at realistic sparsity.

Runs `ttfc ncf` (the training is ttfc's; this script only orchestrates and summarizes):

  1. data    the synthetic sets (`ttfc ncf --synthetic NAME --write-ratings ... --write-only`),
             or --ratings files given by the user (ml-1m's ratings.dat, ml-20m's ratings.csv)
  2. tuning  every optimizer on every learning rate of --lrs with one seed (--tune-seed, not one
             of the reported seeds), evaluated after every epoch up to --epochs: the same effort
             for each; the best (learning rate, epochs) by HR@10 (then NDCG@10) is kept
  3. final   every optimizer at its tuned learning rate with --seeds, evaluated after every epoch
  4. report  results.csv (one row per run, epoch and band), summary.json and summary.md (mean
             ± sd over seeds at each optimizer's tuned budget, overall and per popularity band of
             the test item and of user activity), and the picture: HR@10 per optimizer and band,
             and its difference from LazyAdam's

A run whose results file exists is not run again, so an interrupted experiment resumes.

  nice -n 19 tools/ncf_experiment.py --out out/ncf-experiment     # the experiment in IR-specs
  tools/ncf_experiment.py --smoke --out /tmp/ncf-smoke            # a minute: tiny sets, 1 epoch
  tools/ncf_experiment.py --datasets sparse --epochs 6 --seeds 1,2,3 --fixed-lrs adam=0.001,...
                                                                  # a longer budget, no tuning
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

OPTIMIZERS = ["adam", "lazyadam", "sparseadam-published", "sparseadam-rowcount", "sparseadam-catchup"]
BANDS = ["head", "torso", "tail"]


def fail(message):
    print(f"ncf_experiment: error: {message}", file=sys.stderr)
    sys.exit(1)


def default_ttfc():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        path = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        fail("cannot find ttfc: build it (swift build -c release --product ttfc) or pass --ttfc PATH")
    return os.path.join(path, "ttfc")


def run(command, log):
    """Runs a ttfc command, appending its output to the log; a failure stops the experiment."""
    started = time.time()
    with open(log, "a", encoding="utf-8") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        status = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    if status != 0:
        fail(f"'{' '.join(command)}' failed with status {status} (its output is in {log})")
    return time.time() - started


def mean_sd(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, sd


def load_runs(path):
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        fail(f"cannot read results '{path}': {e}")
    return results


def epoch_metrics(run_entry, key="bands"):
    """[(epoch, overall hr, ndcg, {band: (hr, ndcg, users)})] of one run; key "user_bands" for
    the bands of user activity instead of item popularity."""
    out = []
    for e in run_entry.get("epochs") or [dict(run_entry, epoch=None)]:
        bands = {b: (e[key][b]["hr"], e[key][b]["ndcg"], e[key][b]["users"]) for b in BANDS if b in e.get(key, {})}
        out.append((e.get("epoch"), e["hr"], e["ndcg"], bands))
    return out


def picture(summary, datasets, optimizers, path):
    """Per data set: HR@10 per optimizer and band (left) and its difference from LazyAdam's
    (right; NDCG@10 instead when LazyAdam was not run)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        fail("matplotlib is missing: run tools/setup and use .venv/bin/python")
    groups = ["all"] + BANDS
    colors = ["#1f5fa8", "#d0622a", "#5a9e4b", "#8e5ba8", "#a88e2a", "#555555"]
    baseline = "lazyadam" if "lazyadam" in optimizers else None
    fig, axes = plt.subplots(len(datasets), 2, figsize=(16, 4.4 * len(datasets)), squeeze=False)
    width = 0.8 / len(optimizers)
    for row, dataset in enumerate(datasets):
        users = summary[dataset][optimizers[0]]
        for col in range(2):
            ax = axes[row][col]
            difference = col == 1 and baseline is not None
            metric = "ndcg" if col == 1 and not difference else "hr"
            lows, highs = [], []
            for k, name in enumerate(optimizers):
                entry = summary[dataset][name]
                means = [entry[g][metric][0] for g in groups]
                sds = [entry[g][metric][1] for g in groups]
                if difference:
                    base = summary[dataset][baseline]
                    means = [m - base[g]["hr"][0] for m, g in zip(means, groups)]
                    sds = [math.hypot(sd, base[g]["hr"][1]) if name != baseline else 0 for sd, g in zip(sds, groups)]
                xs = [g + (k - (len(optimizers) - 1) / 2) * width for g in range(len(groups))]
                ax.bar(xs, means, width * 0.92, yerr=sds, capsize=2, color=colors[k % len(colors)],
                       label=f"{name} (lr {entry['lr']:g}, {entry['epochs']} epoch{'s' if entry['epochs'] != 1 else ''})",
                       error_kw={"linewidth": 1})
                lows += [m - s for m, s in zip(means, sds) if math.isfinite(m)]
                highs += [m + s for m, s in zip(means, sds) if math.isfinite(m)]
            ax.set_xticks(range(len(groups)))
            ax.set_xticklabels([f"{g}\n({users[g]['users']} test users)" for g in groups])
            ax.grid(axis="y", alpha=0.3)
            if difference:
                ax.axhline(0, color="black", linewidth=0.8)
                ax.set_ylabel("HR@10 minus LazyAdam's")
                ax.set_title(f"{dataset}: HR@10 minus LazyAdam's, per band (± sd of the difference)", fontsize=10)
                ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title=dataset, title_fontsize=8)
            else:
                ax.set_ylim(max(0, min(lows) - 0.05), max(highs) + 0.03)
                label = "HR@10" if metric == "hr" else "NDCG@10"
                ax.set_ylabel(label)
                ax.set_title(f"{dataset}: {label} per popularity band of the test item (mean ± sd over seeds)", fontsize=10)
                if col == 1:
                    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title=dataset, title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(prog="tools/ncf_experiment.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ttfc", help="the ttfc binary (default: the release build)")
    parser.add_argument("--out", default="out/ncf-experiment", help="directory for data, runs, logs and the report")
    parser.add_argument("--datasets", default="ml1m,sparse", help="synthetic shapes (ml1m, sparse, NAME:F)")
    parser.add_argument("--ratings", action="append", default=[], help="a real ratings file as well (ml-1m ratings.dat, ml-20m ratings.csv); repeatable")
    parser.add_argument("--data-seed", type=int, default=7)
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--lrs", default="0.001,0.003,0.01", help="learning rates tried in tuning")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run; every epoch is an evaluated budget")
    parser.add_argument("--tune-seed", type=int, default=101)
    parser.add_argument("--fixed-lrs", help="no tuning: OPTIMIZER=LR,... (every optimizer's rate; reported after the last epoch)")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--jobs", type=int, default=2, help="ttfc processes at a time (each runs with TTFC_THREADS=1, so results do not depend on it)")
    parser.add_argument("--picture", help="where to draw the picture (default: OUT/ncf-sparseadam.png)")
    parser.add_argument("--smoke", action="store_true", help="tiny sets (ml1m:0.02, sparse:0.01), 1 epoch, 2 seeds, 2 learning rates")
    args = parser.parse_args()
    if args.smoke:
        args.datasets, args.epochs, args.seeds, args.lrs = "ml1m:0.02,sparse:0.01", 1, "1,2", "0.002,0.004"
    # One kernel thread per process: the sums inside kernels, and so the results, do not
    # depend on how many jobs run at a time.
    os.environ["TTFC_THREADS"] = "1"
    ttfc = args.ttfc or default_ttfc()
    if not os.access(ttfc, os.X_OK):
        fail(f"ttfc '{ttfc}' is not an executable")
    optimizers = [o for o in args.optimizers.split(",") if o]
    lrs = [float(x) for x in args.lrs.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    if args.tune_seed in seeds:
        fail(f"--tune-seed {args.tune_seed} is one of --seeds: tuning would pick settings on a reported run")
    for sub in ("data", "runs"):
        os.makedirs(os.path.join(args.out, sub), exist_ok=True)
    log = os.path.join(args.out, "ttfc.log")
    started = time.time()

    # 1. data
    datasets = {}
    for name in [d for d in args.datasets.split(",") if d]:
        path = os.path.join(args.out, "data", f"{name.replace(':', '-')}-seed{args.data_seed}.csv")
        if not os.path.exists(path):
            print(f"data: generating {name} -> {path}", flush=True)
            run([ttfc, "ncf", "--synthetic", name, "--data-seed", str(args.data_seed), "--write-ratings", path, "--write-only"], log)
        datasets[name] = path
    for path in args.ratings:
        # Named by the directory it is in (ml-1m/ratings.dat: ml-1m).
        datasets[os.path.basename(os.path.dirname(os.path.abspath(path)))] = path

    def ncf(dataset, optimizer, lr, seed_list, tag):
        result = os.path.join(args.out, "runs", f"{tag}-{dataset.replace(':', '-')}-{optimizer}-lr{lr:g}-s{'_'.join(map(str, seed_list))}.json")
        if not os.path.exists(result):
            command = [ttfc, "ncf", "--ratings", datasets[dataset], "--optimizers", optimizer, "--lr", f"{lr:g}",
                       "--epochs", str(args.epochs), "--eval-every-epoch", "--seeds", ",".join(map(str, seed_list)), "--results", result + ".partial"]
            seconds = run(command, result + ".log")
            os.replace(result + ".partial", result)
            print(f"  {tag} {dataset} {optimizer} lr {lr:g} seeds {seed_list}: {seconds:.0f} s", flush=True)
        return load_runs(result)

    fixed = {}
    if args.fixed_lrs:
        for pair in args.fixed_lrs.split(","):
            name, _, rate = pair.partition("=")
            try:
                fixed[name] = float(rate)
            except ValueError:
                fail(f"--fixed-lrs: '{pair}' is not OPTIMIZER=LR")
        if set(fixed) != set(optimizers):
            fail(f"--fixed-lrs names {sorted(fixed)}, not the optimizers {sorted(optimizers)}")
        lrs = sorted(set(fixed.values()))
    jobs = []
    for dataset in datasets:
        for optimizer in optimizers:
            for lr in ([] if fixed else lrs):
                jobs.append((dataset, optimizer, lr, [args.tune_seed], "tune"))
    rows = []

    def record(dataset, phase, optimizer, lr, results):
        for r in results["runs"]:
            for epoch, hr, ndcg, bands in epoch_metrics(r):
                row = {"dataset": dataset, "phase": phase, "optimizer": optimizer, "lr": lr, "seed": r["seed"], "epoch": epoch,
                       "hr": hr, "ndcg": ndcg, "seconds": r["seconds"]}
                for b in BANDS:
                    if b in bands:
                        row[f"{b}_hr"], row[f"{b}_ndcg"], row[f"{b}_users"] = bands[b]
                rows.append(row)
            for (epoch, _, _, bands), row in zip(epoch_metrics(r, "user_bands"), rows[-len(epoch_metrics(r)):]):
                for b in BANDS:
                    if b in bands:
                        row[f"users_{b}_hr"], row[f"users_{b}_ndcg"], row[f"users_{b}_users"] = bands[b]

    # 2. tuning (jobs run --jobs at a time; each writes its own results file)
    if jobs:
        print(f"tuning: {len(jobs)} runs ({len(optimizers)} optimizers x {len(lrs)} learning rates x {len(datasets)} data sets, seed {args.tune_seed}, "
              f"{args.epochs} epochs)", flush=True)
    run_jobs(jobs, ncf, args.jobs)
    tuned = {}
    for dataset, optimizer, lr, seed_list, tag in jobs:
        results = ncf(dataset, optimizer, lr, seed_list, tag)
        record(dataset, "tune", optimizer, lr, results)
        for epoch, hr, ndcg, _ in epoch_metrics(results["runs"][0]):
            best = tuned.get((dataset, optimizer))
            if best is None or (hr, ndcg) > (best[2], best[3]):
                tuned[(dataset, optimizer)] = (lr, epoch, hr, ndcg)

    for dataset in datasets:
        for optimizer, lr in fixed.items():
            tuned[(dataset, optimizer)] = (lr, args.epochs, math.nan, math.nan)

    # 3. final runs at the tuned learning rates
    finals = [(dataset, optimizer, tuned[(dataset, optimizer)][0], seeds, "final") for dataset in datasets for optimizer in optimizers]
    print(f"final: {len(finals)} runs of seeds {seeds}", flush=True)
    run_jobs(finals, ncf, args.jobs)
    summary = {}
    for dataset, optimizer, lr, seed_list, tag in finals:
        results = ncf(dataset, optimizer, lr, seed_list, tag)
        record(dataset, "final", optimizer, lr, results)
        epoch = tuned[(dataset, optimizer)][1]
        entry = {"lr": lr, "epochs": epoch, "seeds": seed_list, "tuning_hr": tuned[(dataset, optimizer)][2]}
        per_seed = [next(e for e in epoch_metrics(r) if e[0] == epoch) for r in results["runs"]]
        entry["all"] = {"hr": mean_sd([e[1] for e in per_seed]), "ndcg": mean_sd([e[2] for e in per_seed]), "users": results["users"]}
        for b in BANDS:
            entry[b] = {"hr": mean_sd([e[3][b][0] for e in per_seed if b in e[3]]), "ndcg": mean_sd([e[3][b][1] for e in per_seed if b in e[3]]),
                        "users": per_seed[0][3].get(b, (0, 0, 0))[2]}
        # The same per band of user activity (head: the most active users; tail: the users whose
        # rows are updated least often).
        per_seed_users = [next(e for e in epoch_metrics(r, "user_bands") if e[0] == epoch) for r in results["runs"]]
        entry["user_bands"] = {b: {"hr": mean_sd([e[3][b][0] for e in per_seed_users if b in e[3]]),
                                   "ndcg": mean_sd([e[3][b][1] for e in per_seed_users if b in e[3]]),
                                   "users": per_seed_users[0][3].get(b, (0, 0, 0))[2]} for b in BANDS}
        # Every epoch budget at the tuned learning rate, for the budget curves.
        entry["by_epoch"] = {}
        for k in range(1, args.epochs + 1):
            at = [next((e for e in epoch_metrics(r) if e[0] == k), None) for r in results["runs"]]
            at = [e for e in at if e is not None]
            entry["by_epoch"][k] = {"hr": mean_sd([e[1] for e in at]), "ndcg": mean_sd([e[2] for e in at]),
                                    "tail_hr": mean_sd([e[3]["tail"][0] for e in at if "tail" in e[3]])}
        entry["item_bands"] = results.get("item_bands")
        summary.setdefault(dataset, {})[optimizer] = entry

    # 4. report
    columns = (["dataset", "phase", "optimizer", "lr", "seed", "epoch", "hr", "ndcg"] + [f"{b}_{m}" for b in BANDS for m in ("hr", "ndcg", "users")]
               + [f"users_{b}_{m}" for b in BANDS for m in ("hr", "ndcg", "users")] + ["seconds"])
    with open(os.path.join(args.out, "results.csv"), "w", encoding="utf-8") as f:
        f.write(",".join(columns) + "\n")
        for row in rows:
            f.write(",".join("" if row.get(c) is None else (f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c])) for c in columns) + "\n")
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump({"datasets": datasets, "lrs": lrs, "epochs": args.epochs, "tune_seed": args.tune_seed, "seeds": seeds, "summary": summary},
                  f, indent=1, sort_keys=True)
    lines = []
    for dataset in datasets:
        lines.append(f"\n{dataset} ({os.path.basename(datasets[dataset])}; each optimizer at its tuned learning rate and epochs; mean ± sd over seeds {seeds})\n")
        lines.append("| table optimizer | lr | epochs | HR@10 | NDCG@10 | HR@10 head | HR@10 torso | HR@10 tail | NDCG@10 head | NDCG@10 torso | NDCG@10 tail |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for optimizer in optimizers:
            e = summary[dataset][optimizer]
            cell = lambda pair: f"{pair[0]:.4f} ± {pair[1]:.4f}"
            lines.append(f"| {optimizer} | {e['lr']:g} | {e['epochs']} | {cell(e['all']['hr'])} | {cell(e['all']['ndcg'])} | "
                         + " | ".join(cell(e[b]["hr"]) for b in BANDS) + " | " + " | ".join(cell(e[b]["ndcg"]) for b in BANDS) + " |")
        users = summary[dataset][optimizers[0]]
        lines.append("\ntest users per band: " + ", ".join(f"{b} {users[b]['users']}" for b in BANDS))
        lines.append(f"\n{dataset}, per band of user activity (head: the most active users), same runs\n")
        lines.append("| table optimizer | HR@10 head users | HR@10 torso users | HR@10 tail users | NDCG@10 tail users |")
        lines.append("|---|---|---|---|---|")
        for optimizer in optimizers:
            e = summary[dataset][optimizer]["user_bands"]
            cell = lambda pair: f"{pair[0]:.4f} ± {pair[1]:.4f}"
            lines.append(f"| {optimizer} | " + " | ".join(cell(e[b]["hr"]) for b in BANDS) + f" | {cell(e['tail']['ndcg'])} |")
        lines.append("\ntest users per band: " + ", ".join(f"{b} {summary[dataset][optimizers[0]]['user_bands'][b]['users']}" for b in BANDS))
        lines.append(f"\n{dataset}, every epoch budget at the tuned learning rate (HR@10 / NDCG@10 / tail-item HR@10, mean over seeds)\n")
        lines.append("| table optimizer | " + " | ".join(f"{k} epoch{'s' if k > 1 else ''}" for k in range(1, args.epochs + 1)) + " |")
        lines.append("|---|" + "---|" * args.epochs)
        for optimizer in optimizers:
            e = summary[dataset][optimizer]["by_epoch"]
            lines.append(f"| {optimizer} | " + " | ".join(f"{e[k]['hr'][0]:.4f} / {e[k]['ndcg'][0]:.4f} / {e[k]['tail_hr'][0]:.4f}" for k in range(1, args.epochs + 1)) + " |")
        lines.append(f"\n{dataset}, tuning (seed {args.tune_seed}): HR@10 after the last epoch for each learning rate\n")
        lines.append("| table optimizer | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |")
        lines.append("|---|" + "---|" * len(lrs))
        for optimizer in optimizers:
            cells = []
            for lr in lrs:
                hits = [row["hr"] for row in rows if row["dataset"] == dataset and row["phase"] == "tune" and row["optimizer"] == optimizer
                        and row["lr"] == lr and row["epoch"] == args.epochs]
                cells.append(f"{hits[0]:.4f}" if hits else "")
            lines.append(f"| {optimizer} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print(text)
    picture_path = args.picture or os.path.join(args.out, "ncf-sparseadam.png")
    picture(summary, list(datasets), optimizers, picture_path)
    print(f"\nwrote {args.out}/results.csv, summary.json, summary.md and {picture_path} ({(time.time() - started) / 60:.1f} min)")


def run_jobs(jobs, ncf, parallel):
    """Runs the jobs whose results are missing, `parallel` at a time (threads waiting on processes)."""
    if parallel <= 1:
        for job in jobs:
            ncf(*job)
        return
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for future in [pool.submit(ncf, *job) for job in jobs]:
            future.result()


if __name__ == "__main__":
    main()
