#!/usr/bin/env python3
"""Per-step communication overhead of `ttfc train --distributed` at 2 ranks on this machine.

  tools/mpi_bench.py --ttfc PATH [--steps N] [--out DIR]

For each model, the time of a step of 2 ranks on a global batch of B examples (each rank computes
B/2, one kernel thread each) against one process computing B/2 (one thread): the difference is
what distribution adds per step (packing, the allreduce of the dense gradients, the gather of the
row gradients, waiting for the slower rank). `--stats` gives the bytes each step moves. Prints a
Markdown table (README.md, "Training on several machines", quotes one run)."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from mpi_check import ENV, MPIRUN, ncf_data  # noqa: E402


def rate(metrics):
    lines = [json.loads(l) for l in open(metrics) if l.strip()]
    return [l for l in lines if "steps_per_second" in l][-1]["steps_per_second"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ttfc", required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="ttfc-mpi-bench-")
    data = os.path.join(out, "data")
    subprocess.run([sys.executable, os.path.join(HERE, "gen_data.py"), data, "--examples", "4096"], check=True, capture_output=True)
    ncf = ncf_data(os.path.join(data, "ncf_train.npz"), n=8192, users=2000, items=1000)
    ex = lambda name: os.path.join(ROOT, "examples", name)
    cases = [("MLP 784-256-10", ex("mlp.ttir"), f"{data}/classification_train.npz", 128),
             ("Wide&Deep (dense)", ex("wide_deep.ttir"), f"{data}/ctr_train.npz", 256),
             ("Wide&Deep over sparse ids (4 tables)", ex("wide_deep_sparse.ttir"), f"{data}/ctr_sparse_train.npz", 256),
             ("NeuMF (4 tables)", ex("ncf.ttir"), ncf, 256),
             ("NeuMF, sharded tables", ex("ncf.ttir"), ncf, 256)]
    env = dict(ENV, TTFC_THREADS="1")
    print("| model | global batch | 1 process, B/2 | 2 ranks, B | overhead per step | dense bytes allreduced | ids sent | rows received | row-gradient bytes sent/gathered | waiting in collectives (rank 0) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, model, train, batch in cases:
        common = [model, "--data", train, "--steps", str(args.steps), "--optimizer", "adam"]
        tag = name.split()[0].strip(",") + ("-sharded" if "sharded" in name else "")
        m1 = os.path.join(out, tag + "-1.jsonl")
        m2 = os.path.join(out, tag + "-2.jsonl")
        for m in (m1, m2):
            if os.path.exists(m):
                os.remove(m)
        subprocess.run([args.ttfc, "train"] + common + ["--batch", str(batch // 2), "--metrics", m1], check=True, capture_output=True, env=env)
        p = subprocess.run(MPIRUN + ["-np", "2", "-x", "TTFC_THREADS=1", args.ttfc, "train"] + common
                           + ["--batch", str(batch), "--metrics", m2, "--distributed", "--stats"]
                           + (["--shard-tables"] if "sharded" in name else []),
                           check=True, capture_output=True, text=True, env=env)
        one, two = 1000 / rate(m1), 1000 / rate(m2)
        stats = [l for l in p.stderr.splitlines() if l.startswith("distributed: per step")][0]
        dense = stats.split("dense gradients ")[1].split(" bytes")[0]
        rows = stats.split("row gradients ")[1].split(" bytes")[0]
        ids = stats.split("ids ")[1].split(" bytes")[0]
        received = stats.split("rows ")[1].split(" bytes")[0]
        waiting = stats.split("gathered; ")[1].split(" waiting")[0]
        print(f"| {name} | {batch} | {one:.2f} ms | {two:.2f} ms | {two - one:+.2f} ms | {int(dense):,} | {int(ids):,} | {int(received):,} | {int(rows):,} | {waiting} |")


if __name__ == "__main__":
    main()
