#!/usr/bin/env python3
"""Distributed training checks (tools/test runs this): `mpirun -np 2 ttfc train ... --distributed`
against one process on the same global batches, the named errors, and a killed rank.

  tools/mpi_check.py --ttfc PATH [--out DIR] [--only NAME,...] [--verbose]

Equivalence: each case trains the same model, data, batches and steps once as a plain
`ttfc train` and once as 2 MPI ranks; every parameter, optimizer slot and embedding-table row
(ids, metadata and values) of the two final checkpoints must agree. A tensor's difference is
max|a - b| / max|a| (relative to its largest magnitude): at most 1e-12 for f64 models and 1e-6 for
f32 ones. Faults: a rank killed with SIGKILL (and one stopped with SIGSTOP) must end the job with
a named error within a bounded time, and the last complete checkpoint must resume. Exit status 1
on any mismatch or failure, with the figures printed."""
import argparse
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
from safetensors import safe_open

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", TTFC_THREADS=os.environ.get("TTFC_THREADS", "1"))
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
failures = []


def fail(message):
    print("FAIL: " + message)
    failures.append(message)


def run(cmd, timeout=300, env=None, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env or ENV)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return p


def read_table(path):
    """A .ttemb file (TableSerialization.swift): {id: (updates, frequency, last_update, last_seen, row+slots as f32)}."""
    b = open(path, "rb").read()
    assert b[:8] == b"TTEMB001", path
    dim, storage, slots, rows, _seed, _kind = struct.unpack_from("<6Q", b, 8)
    offset = 8 + 48 + 4 + 4 + 4 * slots
    end = len(b) - 8
    per_row = (end - offset) // rows if rows else 0
    out = {}
    for _ in range(rows):
        ident, updates, frequency, last_update, last_seen = struct.unpack_from("<qqQqq", b, offset)
        values = b[offset + 40: offset + per_row]
        if storage == 0:
            data = np.frombuffer(values, dtype=np.float32)
        else:   # bf16 rows, then f32 slots
            row = np.frombuffer(values[:2 * dim], dtype=np.uint16).astype(np.uint32) << 16
            data = np.concatenate([row.view(np.float32), np.frombuffer(values[2 * dim:], dtype=np.float32)])
        out[ident] = ((updates, frequency, last_update, last_seen), data.astype(np.float64))
        offset += per_row
    return out


MASK = (1 << 64) - 1


def owner(ident, ranks):
    """TableSharding.owner: splitmix64's finalizer of the id, modulo the ranks."""
    z = (ident + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return (z ^ (z >> 31)) % ranks


def read_checkpoint(directory):
    path = os.path.join(directory, "checkpoint.safetensors")
    tensors, tables = {}, {}
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
        for k in f.keys():
            tensors[k] = f.get_tensor(k).astype(np.float64)
    for key, files in meta.items():
        if key.startswith("table."):
            # A sharded table: the union of its shards, each id in exactly one, the one its hash names.
            union = {}
            shards = files.split(",")
            for r, file in enumerate(shards):
                shard = read_table(os.path.join(directory, file))
                for ident in shard:
                    if ident in union:
                        fail(f"{directory}: id {ident} of {key} is in two shards")
                    if len(shards) > 1 and owner(ident, len(shards)) != r:
                        fail(f"{directory}: id {ident} of {key} is in shard {r}, but rank {owner(ident, len(shards))} owns it")
                union.update(shard)
            tables[key[len("table."):]] = union
    return meta, tensors, tables


def compare(name, one, two, tolerance):
    """Largest relative difference over every tensor and table; records a failure above `tolerance`."""
    meta1, t1, tab1 = one
    meta2, t2, tab2 = two
    worst, where = 0.0, ""
    if meta1.get("step") != meta2.get("step"):
        fail(f"{name}: the checkpoints are at steps {meta1.get('step')} and {meta2.get('step')}")
    if sorted(t1) != sorted(t2):
        fail(f"{name}: different tensors: {sorted(set(t1) ^ set(t2))}")
        return None
    for k in sorted(t1):
        a, b = t1[k], t2[k]
        scale = max(np.max(np.abs(a)) if a.size else 0.0, 1e-300)
        d = float(np.max(np.abs(a - b)) / scale) if a.size else 0.0
        if d > worst:
            worst, where = d, k
    if sorted(tab1) != sorted(tab2):
        fail(f"{name}: different tables: {sorted(tab1)} vs {sorted(tab2)}")
        return None
    rows = 0
    for table in sorted(tab1):
        a, b = tab1[table], tab2[table]
        if set(a) != set(b):
            fail(f"{name}: table @{table} holds different ids ({len(set(a) ^ set(b))} differ)")
            continue
        if not a:
            continue
        rows += len(a)
        ids = sorted(a)
        meta_a = [a[i][0] for i in ids]
        meta_b = [b[i][0] for i in ids]
        if meta_a != meta_b:
            fail(f"{name}: table @{table}: row metadata (updates, frequency, last update, last seen) differ")
        va = np.stack([a[i][1] for i in ids])
        vb = np.stack([b[i][1] for i in ids])
        scale = max(float(np.max(np.abs(va))), 1e-300)
        d = float(np.max(np.abs(va - vb)) / scale)
        if d > worst:
            worst, where = d, f"table @{table}"
    status = "ok" if worst <= tolerance else "MISMATCH"
    print(f"  {name}: {len(t1)} tensors, {len(tab1)} tables ({rows} rows): max relative difference {worst:.3g} "
          f"({where or '-'}); bound {tolerance:g}: {status}")
    if worst > tolerance:
        fail(f"{name}: max relative difference {worst:.3g} in {where} exceeds {tolerance:g}")
    return worst


def f64_model(source, out):
    text = open(source).read().replace("f32", "f64")
    open(out, "w").write(text)
    return out


def ncf_data(path, n=512, users=60, items=80, seed=3):
    rng = np.random.default_rng(seed)
    user = (rng.zipf(1.6, n) % users).astype(np.int64)
    item = (rng.zipf(1.4, n) % items).astype(np.int64)
    label = (rng.random(n) < 0.4).astype(np.float32)
    np.savez(path, user=user, item=item, label=label)
    return path


def equivalence(ttfc, out, only):
    data = os.path.join(out, "data")
    run([sys.executable, os.path.join(HERE, "gen_data.py"), data, "--examples", "384", "--seed", "5"])
    ncf = ncf_data(os.path.join(data, "ncf_train.npz"))
    mlp64 = f64_model(os.path.join(ROOT, "examples/mlp.ttir"), os.path.join(out, "mlp_f64.ttir"))
    wd64 = f64_model(os.path.join(ROOT, "examples/wide_deep.ttir"), os.path.join(out, "wide_deep_f64.ttir"))
    ex = lambda name: os.path.join(ROOT, "examples", name)
    cases = [
        # name, model, data, options, tolerance
        ("mlp-f64-adam", mlp64, f"{data}/classification_train.npz", ["--optimizer", "adam", "--lr", "0.001"], 1e-12),
        ("mlp-f32-momentum", ex("mlp.ttir"), f"{data}/classification_train.npz", ["--optimizer", "momentum", "--lr", "0.01"], 1e-6),
        ("wide_deep-f64-adam", wd64, f"{data}/ctr_train.npz", ["--optimizer", "adam", "--lr", "0.01", "--clip-norm", "1.0"], 1e-12),
        ("wide_deep-f32-sgd", ex("wide_deep.ttir"), f"{data}/ctr_train.npz", ["--optimizer", "sgd", "--lr", "0.05"], 1e-6),
        ("wide_deep_sparse-f32-adagrad (tables)", ex("wide_deep_sparse.ttir"), f"{data}/ctr_sparse_train.npz",
         ["--optimizer", "adagrad", "--lr", "0.05"], 1e-6),
        ("ncf-f32-sgd (tables)", ex("ncf.ttir"), ncf, ["--optimizer", "sgd", "--lr", "0.05"], 1e-6),
        ("ncf-f32-adam-sparseadam (tables)", ex("ncf.ttir"), ncf, ["--optimizer", "adam", "--lr", "0.001"], 1e-6),
        # Sharded tables: each rank holds the rows of the ids it owns; the union of the shards is compared.
        ("sharded-wide_deep_sparse-f32-adagrad (union of shards)", ex("wide_deep_sparse.ttir"), f"{data}/ctr_sparse_train.npz",
         ["--optimizer", "adagrad", "--lr", "0.05", "--shard-tables"], 1e-6),
        ("sharded-ncf-f32-sgd (union of shards)", ex("ncf.ttir"), ncf, ["--optimizer", "sgd", "--lr", "0.05", "--shard-tables"], 1e-6),
        ("sharded-ncf-f32-adam-sparseadam (union of shards)", ex("ncf.ttir"), ncf, ["--optimizer", "adam", "--lr", "0.001", "--shard-tables"], 1e-6),
    ]
    for name, model, train, options, tolerance in cases:
        if only and not any(name.startswith(o) for o in only):
            continue
        common = [model, "--data", train, "--batch", "32", "--steps", "8", "--seed", "11"] + options
        single, double = os.path.join(out, name.split()[0] + "-1"), os.path.join(out, name.split()[0] + "-2")
        run([ttfc, "train"] + [o for o in common if o != "--shard-tables"] + ["--checkpoint", single])
        run(MPIRUN + ["-np", "2", ttfc, "train"] + common + ["--checkpoint", double, "--distributed"])
        compare(name, read_checkpoint(single), read_checkpoint(double), tolerance)
    # The split step on one rank is the fused step bit for bit, and the bucket size changes nothing.
    if not only or any("exact".startswith(o) for o in only):
        common = [ex("mlp.ttir"), "--data", f"{data}/classification_train.npz", "--batch", "32", "--steps", "6", "--seed", "11"]
        plain, one, small = (os.path.join(out, n) for n in ("exact-plain", "exact-np1", "exact-np2-small-buckets"))
        run([ttfc, "train"] + common + ["--checkpoint", plain])
        run(MPIRUN + ["-np", "1", ttfc, "train"] + common + ["--checkpoint", one, "--distributed"])
        compare("mlp-f32-adam: 1 rank (split step) against the fused step, bit for bit", read_checkpoint(plain), read_checkpoint(one), 0.0)
        big = os.path.join(out, "exact-np2")
        run(MPIRUN + ["-np", "2", ttfc, "train"] + common + ["--checkpoint", big, "--distributed"])
        p = run(MPIRUN + ["-np", "2", "-x", "TTFC_MPI_BUCKET_BYTES=16384", ttfc, "train"] + common
                + ["--checkpoint", small, "--distributed", "--stats"])
        compare("mlp-f32-adam: 2 ranks, 16 KiB buckets against one 4 MiB bucket, bit for bit", read_checkpoint(big), read_checkpoint(small), 0.0)
        overlap = [l for l in p.stderr.splitlines() if "started before the backward pass ended" in l]
        if not overlap or " 0 of " in overlap[0]:
            fail(f"no bucket allreduce overlapped the backward pass: {overlap}")
        else:
            print("    " + overlap[0].split("; ")[-1])
        adam = read_checkpoint(plain), read_checkpoint(big)
        _, t1, _ = adam[0]
        _, t2, _ = adam[1]
        worst = max(float(np.max(np.abs(t1[k] - t2[k])) / max(np.max(np.abs(t1[k])), 1e-300)) for k in t1)
        print(f"    (not a bound: f32 Adam, 2 ranks against 1 process, max relative difference {worst:.3g}: Adam divides by the"
              " root of the squared gradient, which magnifies the rounding of gradient sums that nearly cancel)")
    # Resume across world sizes: 2 ranks for 4 steps, then 1 process to 8 (and the reverse) equal 8 steps in one go.
    if not only or any("resume".startswith(o) for o in only):
        common = [mlp64, "--data", f"{data}/classification_train.npz", "--batch", "32", "--seed", "11", "--optimizer", "adam", "--lr", "0.001"]
        reference = os.path.join(out, "resume-ref")
        run([ttfc, "train"] + common + ["--steps", "8", "--checkpoint", reference])
        a = os.path.join(out, "resume-2-then-1")
        run(MPIRUN + ["-np", "2", ttfc, "train"] + common + ["--steps", "4", "--checkpoint", a, "--distributed"])
        run([ttfc, "train"] + common + ["--steps", "8", "--checkpoint", a, "--resume"])
        compare("resume: 2 ranks to step 4, then 1 process to 8", read_checkpoint(reference), read_checkpoint(a), 1e-12)
        b = os.path.join(out, "resume-1-then-2")
        run([ttfc, "train"] + common + ["--steps", "4", "--checkpoint", b])
        p = run(MPIRUN + ["-np", "2", ttfc, "train"] + common + ["--steps", "8", "--checkpoint", b, "--distributed", "--resume"])
        if "resumed from step 4" not in p.stdout:
            fail("resume with 2 ranks did not report 'resumed from step 4'")
        compare("resume: 1 process to step 4, then 2 ranks to 8", read_checkpoint(reference), read_checkpoint(b), 1e-12)
    # Sharded checkpoints: the same world size resumes exactly; another re-shards (and says so).
    if not only or any("sharded-resume".startswith(o) for o in only):
        common = [ex("ncf.ttir"), "--data", ncf, "--batch", "32", "--seed", "11", "--optimizer", "adam", "--lr", "0.001"]
        whole = os.path.join(out, "sharded-resume-whole")
        run(MPIRUN + ["-np", "2", ttfc, "train"] + common + ["--steps", "8", "--checkpoint", whole, "--distributed", "--shard-tables"])
        again = os.path.join(out, "sharded-resume-2-then-2")
        run(MPIRUN + ["-np", "2", ttfc, "train"] + common + ["--steps", "4", "--checkpoint", again, "--distributed", "--shard-tables"])
        run(MPIRUN + ["-np", "2", ttfc, "train"] + common + ["--steps", "8", "--checkpoint", again, "--distributed", "--shard-tables", "--resume"])
        compare("sharded: 2 ranks to step 4, resumed on 2 ranks to 8, against 8 in one go, bit for bit", read_checkpoint(whole), read_checkpoint(again), 0.0)
        single = os.path.join(out, "sharded-resume-reference")
        run([ttfc, "train"] + common + ["--steps", "8", "--checkpoint", single])
        other = os.path.join(out, "sharded-resume-2-then-1")
        run(MPIRUN + ["-np", "2", ttfc, "train"] + common + ["--steps", "4", "--checkpoint", other, "--distributed", "--shard-tables"])
        p = run([ttfc, "train"] + common + ["--steps", "8", "--checkpoint", other, "--resume"])
        if "re-sharded from 2 shards to 1" not in p.stderr:
            fail(f"resuming 2 shards in 1 process did not say it re-shards: {p.stderr[-500:]}")
        else:
            print("    " + [l for l in p.stderr.splitlines() if "re-sharded" in l][0])
        compare("sharded: 2 ranks to step 4, re-sharded into 1 process to 8, against 1 process", read_checkpoint(single), read_checkpoint(other), 1e-6)
        back = os.path.join(out, "sharded-resume-1-then-2")
        run([ttfc, "train"] + common + ["--steps", "4", "--checkpoint", back])
        p = run(MPIRUN + ["-np", "2", ttfc, "train"] + common + ["--steps", "8", "--checkpoint", back, "--distributed", "--shard-tables", "--resume"])
        if "re-sharded from 1 shard to 2" not in p.stderr:
            fail(f"resuming 1 table file on 2 sharded ranks did not say it re-shards: {p.stderr[-500:]}")
        compare("sharded: 1 process to step 4, re-sharded onto 2 ranks to 8, against 1 process", read_checkpoint(single), read_checkpoint(back), 1e-6)
    return data


def expect_error(name, cmd, text, timeout=120):
    start = time.time()
    p = run(cmd, timeout=timeout, check=False)
    took = time.time() - start
    if p.returncode == 0 or text not in p.stderr:
        fail(f"{name}: expected a failure naming '{text}', got exit {p.returncode}:\n{p.stderr[-1500:]}")
    else:
        line = next(l for l in p.stderr.splitlines() if text in l)
        print(f"  {name}: exit {p.returncode} in {took:.1f} s: {line.strip()[:220]}")


def named_errors(ttfc, data, out):
    model = os.path.join(ROOT, "examples/mlp.ttir")
    common = [model, "--data", f"{data}/classification_train.npz", "--steps", "2"]
    env = {k: v for k, v in ENV.items() if not k.startswith(("OMPI_COMM_WORLD", "PMIX_"))}
    p = subprocess.run([ttfc, "train"] + common + ["--distributed"], capture_output=True, text=True, env=env, timeout=60)
    if p.returncode == 0 or "not started by mpirun" not in p.stderr:
        fail(f"--distributed without mpirun: exit {p.returncode}: {p.stderr[-500:]}")
    else:
        print(f"  --distributed without mpirun: exit {p.returncode}: {p.stderr.strip().splitlines()[-1][:200]}")
    expect_error("batch not divisible", MPIRUN + ["-np", "2", ttfc, "train"] + common + ["--batch", "33", "--distributed"],
                 "does not divide among 2 ranks")
    expect_error("ranks disagree", MPIRUN + ["-np", "1", ttfc, "train"] + common + ["--lr", "0.01", "--distributed", ":",
                 "-np", "1", ttfc, "train"] + common + ["--lr", "0.02", "--distributed"], "the ranks disagree")


def rank_pids(marker):
    """The ttfc processes of our job (their command line holds `marker`, the checkpoint directory), by MPI rank."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"ttfc" not in cmdline.split(b"\0")[0] or marker.encode() not in cmdline.split(b"\0"):
            continue
        for entry in environ:
            if entry.startswith(b"OMPI_COMM_WORLD_RANK="):
                found[int(entry.split(b"=")[1])] = int(pid)
    return found


def fault(ttfc, data, out, how):
    """Starts 2 ranks on a long run, waits for a checkpoint, then signals rank 1 with `how`."""
    directory = os.path.join(out, f"fault-{how}")
    model = os.path.join(ROOT, "examples/mlp.ttir")
    cmd = MPIRUN + ["-np", "2", ttfc, "train", model, "--data", f"{data}/classification_train.npz", "--batch", "32",
                    "--steps", "100000", "--checkpoint", directory, "--checkpoint-every", "5", "--distributed"]
    env = dict(ENV, TTFC_MPI_TIMEOUT="5")
    log = open(os.path.join(out, f"fault-{how}.log"), "w+")
    start = time.time()
    job = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        checkpoint = os.path.join(directory, "checkpoint.safetensors")
        while not os.path.exists(checkpoint) and time.time() - start < 120 and job.poll() is None:
            time.sleep(0.2)
        time.sleep(1.0)
        pids = rank_pids(directory)
        if not os.path.exists(checkpoint) or 1 not in pids:
            fail(f"fault {how}: no checkpoint or no rank 1 after {time.time() - start:.0f} s (ranks {pids})")
            return
        killed_at = time.time()
        os.kill(pids[1], signal.SIGKILL if how == "kill" else signal.SIGSTOP)
        try:
            job.wait(timeout=60)
        except subprocess.TimeoutExpired:
            fail(f"fault {how}: the job still runs 60 s after rank 1 was signalled (a hang)")
            return
        took = time.time() - killed_at
        log.seek(0)
        text = log.read()
        named = [l for l in text.splitlines() if "distributed training" in l and ("rank" in l)]
        if job.returncode == 0 or not named:
            fail(f"fault {how}: exit {job.returncode}, no named error:\n{text[-2000:]}")
            return
        print(f"  rank 1 {'killed (SIGKILL)' if how == 'kill' else 'stopped (SIGSTOP, unreachable)'}: job ended in {took:.1f} s, "
              f"exit {job.returncode}: {named[0].strip()[:260]}")
        # The last complete checkpoint resumes (one process, a few more steps), and the message names it.
        meta = read_checkpoint(directory)[0]
        step = int(meta["step"])
        if f"the last complete checkpoint is step {step} in" not in text:
            fail(f"fault {how}: the messages do not name the last complete checkpoint, step {step}:\n{text[-1500:]}")
        p = run([ttfc, "train", model, "--data", f"{data}/classification_train.npz", "--batch", "32", "--steps", str(step + 3),
                 "--checkpoint", directory, "--checkpoint-every", "5", "--resume", "--allow-changed-schedule"], check=False)
        if p.returncode != 0 or f"resumed from step {step}" not in p.stdout:
            fail(f"fault {how}: the checkpoint at step {step} does not resume: {p.stdout[-500:]} {p.stderr[-800:]}")
        else:
            print(f"    the last complete checkpoint (step {step}) resumes: {p.stdout.strip().splitlines()[-1]}")
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        for pid in rank_pids(directory).values():   # a stopped rank left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ttfc", required=True)
    parser.add_argument("--out")
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="ttfc-mpi-")
    os.makedirs(out, exist_ok=True)
    only = [o for o in args.only.split(",") if o]
    print("equivalence: 2 MPI ranks against 1 process, same global batches (batch 32, 8 steps)")
    data = equivalence(args.ttfc, out, only)
    if not only or "errors" in only:
        print("named errors")
        named_errors(args.ttfc, data, out)
    if not only or "faults" in only:
        print("faults (TTFC_MPI_TIMEOUT=5)")
        fault(args.ttfc, data, out, "kill")
        fault(args.ttfc, data, out, "stop")
    if failures:
        print(f"mpi_check: {len(failures)} failure(s)")
        sys.exit(1)
    print("mpi_check: all distributed checks passed")


if __name__ == "__main__":
    main()
