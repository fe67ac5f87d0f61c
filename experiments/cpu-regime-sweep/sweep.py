"""Issue 9 regime sweep: candidate CPU profiles, one seed, 1 thread per process, 2 processes (docs/regime.md).

``python experiments/cpu-regime-sweep/sweep.py`` trains into ``runs/sweep/<candidate>/<method>/`` of the
repository and appends one line per run to ``runs/sweep/results.jsonl``; the committed results of the
sweep are in ``results/cpu-regime-sweep/`` (``table.py`` prints them as docs/regime.md's table).
"""
import json, time, torch
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
import multiprocessing as mp

SWEEP = Path(__file__).resolve().parents[2] / "runs" / "sweep"  # the repository's runs/, wherever this is started

JOBS = [  # (candidate, train_limit, epochs, method)
    ("A_5k_30ep", 5000, 30, "mtlat"), ("C_2.5k_60ep", 2500, 60, "mtlat"), ("D_10k_15ep", 10000, 15, "mtlat"),
    ("A_5k_30ep", 5000, 30, "mixup"), ("C_2.5k_60ep", 2500, 60, "mixup"), ("D_10k_15ep", 10000, 15, "mixup"),
    ("A_5k_30ep", 5000, 30, "standard"), ("C_2.5k_60ep", 2500, 60, "standard"), ("D_10k_15ep", 10000, 15, "standard"),
    ("B_5k_60ep", 5000, 60, "standard"), ("B_5k_60ep", 5000, 60, "mixup"),
]

def job(args):
    cand, n, ep, method = args
    torch.set_num_threads(1)
    from mtlat_edu.training import TrainConfig, epoch_accuracy, fit
    from mtlat_edu.data import load_dataset
    tr = load_dataset("cifar10", "train", None, None, n, 0)
    te = load_dataset("cifar10", "test", None, None, 2000, 0)
    full = load_dataset("cifar10", "test", None, None, None, 0)
    cfg = TrainConfig(method=method, model="small_cnn", train_limit=n, test_limit=2000, epochs=ep,
                      batch_size=128, device="cpu", seed=0)
    t = time.time()
    r = fit(cfg, SWEEP / cand / method, tr, te, progress=False)
    acc = epoch_accuracy(r.model, full, 1000, "cpu")
    out = {"candidate": cand, "train_limit": n, "epochs": ep, "method": method, "test_acc_10k": acc,
           "curve_2k": [h["test_acc"] for h in r.history], "train_loss": [h["train_loss"] for h in r.history],
           "seconds": round(time.time() - t, 1)}
    with open(SWEEP / "results.jsonl", "a") as f:
        f.write(json.dumps(out) + "\n")
    return out

if __name__ == "__main__":
    from mtlat_edu.data import load_dataset
    load_dataset("cifar10", "train", None, None, None, 0); load_dataset("cifar10", "test", None, None, None, 0)
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as ex:
        for r in ex.map(job, JOBS):
            print(r["candidate"], r["method"], r["test_acc_10k"], r["seconds"], flush=True)
