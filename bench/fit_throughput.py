"""Per-device maximum-likelihood fits at 10^4 .. 10^6 devices: time, peak memory, coverage.

Counts are simulated from the true law on the grids of the default calibration protocols
(``labctl/defaults/protocols/calibrate-*.toml``): logistic and Gaussian depinning at 25 fields
1.5-8 mT x 200 trials; thermal switching at 25 voltages 0.5-0.95 V x widths 10 ns and 100 ns x
200 trials (tau0 = 1 ns); DW-MTJ landing at 26 currents 80-330 uA x widths 10 ns and 20 ns x 100
trials, K = 5 levels. Device parameters spread as in ``docs/physics.md``.

Each (law, size) runs in a fresh subprocess; the peak memory of the fit is the growth of the
process's peak resident set (``resource.getrusage(...).ru_maxrss``) across the fit call, so the
simulated counts, made before the call, are not counted. "cpu s" is the process's CPU time
across the fit (``time.process_time``): on a shared machine it varies less than the wall time. With ``--old`` the autograd-Hessian
path that these fits replaced (``analysis/fitting.py`` at commit ``OLD_COMMIT``, read with
``git show``) is timed at the sizes of ``--old-sizes``; ``--old-commit`` names another commit
to compare with (e.g. the fits before a speed-up: the rows are labelled with it). Coverage: the fraction of converged
devices whose interval (level 0.95) contains the true value, per parameter.

    python bench/fit_throughput.py [--sizes 1e4,1e5,1e6] [--laws logistic,thermal,landing]
                                   [--old --old-sizes 1e4,2e5 [--old-commit 5ce02d8]]
                                   [--device cpu|cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD_COMMIT = "5ce02d8"  # last commit with the autograd-Hessian fits
LAWS = ("logistic", "gaussian", "thermal", "landing")


def simulate(law: str, n: int, device, seed: int = 0):
    """(fit function, args, kwargs, truth) for n devices of ``law`` on its calibration grid."""
    import torch

    from analysis.switching_laws import dwmtj_landing, gaussian_depinning, logistic_depinning, thermal_switching

    D = torch.float64
    g = torch.Generator().manual_seed(seed)

    def spread(nominal, rel, lognormal=False):
        z = torch.randn(n, generator=g, dtype=D)
        return nominal * torch.exp(rel * z) if lognormal else nominal * (1.0 + rel * z)

    def binomial(p, trials):
        out = torch.empty(p.shape, dtype=torch.int16)
        for lo in range(0, p.shape[0], 65536):  # in chunks: bounded memory at 10^6 devices
            pc = p[lo:lo + 65536]
            out[lo:lo + 65536] = torch.binomial(torch.full_like(pc, float(trials)), pc, generator=g).to(torch.int16)
        return out

    if law in ("logistic", "gaussian"):
        h = torch.linspace(1.5e-3, 8.0e-3, 25, dtype=D)
        if law == "logistic":
            truth = {"x0": spread(4.63168e-3, 0.05), "dx": spread(2727.41, 0.10, True),
                     "a": (0.97813 + 0.005 * torch.randn(n, generator=g, dtype=D)).clamp(max=1.0)}
            p = logistic_depinning(h, truth["x0"][:, None], truth["dx"][:, None], truth["a"][:, None])
        else:
            truth = {"h0": spread(4.63168e-3, 0.05), "sigma": spread(1.7 / 2727.41, 0.10, True)}
            p = gaussian_depinning(h, truth["h0"][:, None], truth["sigma"][:, None])
        k = binomial(p, 200)
        return law, (h.to(device), k.to(device), 200), {}, truth
    if law == "thermal":
        truth = {"delta": spread(45.0, 0.05), "vc0": spread(0.8, 0.03)}
        v1 = torch.linspace(0.5, 0.95, 25, dtype=D)
        v = torch.cat([v1, v1])
        w = torch.cat([torch.full((25,), 1e-8, dtype=D), torch.full((25,), 1e-7, dtype=D)])
        p = thermal_switching(v, w, truth["delta"][:, None], truth["vc0"][:, None], 1e-9)
        k = binomial(p, 200)
        return law, (v.to(device), w.to(device), k.to(device), 200), {"tau0": 1e-9}, truth
    truth = {"i_c": spread(100e-6, 0.05, True), "mobility": spread(2e12, 0.05, True), "sigma": spread(0.15, 0.20, True)}
    i1 = torch.linspace(80e-6, 330e-6, 26, dtype=D)
    cur = torch.cat([i1, i1])
    w = torch.cat([torch.full((26,), 1e-8, dtype=D), torch.full((26,), 2e-8, dtype=D)])
    counts = torch.empty((n, 52, 5), dtype=torch.int16)
    for lo in range(0, n, 16384):
        hi = min(n, lo + 16384)
        p = dwmtj_landing(torch.zeros(1, dtype=D), cur, w, truth["i_c"][lo:hi, None], truth["mobility"][lo:hi, None],
                          truth["sigma"][lo:hi, None], 5)
        rem = torch.full(p.shape[:-1], 100.0, dtype=D)
        left = torch.ones_like(rem)
        for lev in range(4):  # multinomial as conditional binomials
            c = torch.binomial(rem, (p[..., lev] / left.clamp(min=1e-12)).clamp(0, 1), generator=g)
            counts[lo:hi, :, lev] = c.to(torch.int16)
            rem, left = rem - c, left - p[..., lev]
        counts[lo:hi, :, 4] = rem.to(torch.int16)
    return "landing", (cur.to(device), w.to(device), counts.to(device), 5), {}, truth


def fit_function(module, law: str):
    return {"logistic": module.fit_logistic, "gaussian": module.fit_gaussian, "thermal": module.fit_thermal,
            "landing": module.fit_dwmtj_landing}[law]


def old_module(commit: str = OLD_COMMIT):
    """analysis/fitting.py as of ``commit``, imported as analysis.fitting_autograd."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:analysis/fitting.py"],
                         capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "fitting_autograd.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("analysis.fitting_autograd", path)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "analysis"
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def child(law: str, n: int, device: str, threads: int, old: bool, old_commit: str = OLD_COMMIT) -> dict:
    """One fit in this (fresh) process; returns the figures as a dict."""
    import torch

    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(threads)
    import analysis.fitting as fitting

    module = old_module(old_commit) if old else fitting
    dev = torch.device(device)
    _, args, kwargs, truth = simulate(law, n, dev)
    fn = fit_function(module, law)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    r = fn(*args, **kwargs)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ok = r.converged.cpu()
    cover = {}
    for name, true in truth.items():
        lo, hi = (x.cpu() for x in r.interval(name))
        inside = (lo <= true) & (true <= hi)
        cover[name] = inside[ok].double().mean().item()
    out = {"law": law, "n": n, "old": old, "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mib": (after - before) / 1024.0,
           "converged": ok.double().mean().item(), "coverage": cover, "device": device}
    if dev.type == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1e4,1e5,1e6", help="device counts, comma separated")
    ap.add_argument("--laws", default="logistic,thermal,landing", help=f"from {','.join(LAWS)}")
    ap.add_argument("--old", action="store_true", help="also time the autograd-Hessian fits of OLD_COMMIT")
    ap.add_argument("--old-sizes", default="1e4,2e5")
    ap.add_argument("--old-commit", default=OLD_COMMIT, help=f"commit of the fits timed by --old (default {OLD_COMMIT})")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: 2 shared cores)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        law, n, old = a.child.split(":")
        print(json.dumps(child(law, int(n), a.device, a.threads, old == "1", a.old_commit)))
        return
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            sys.exit("fit_throughput: --device cuda: this machine has no CUDA device "
                     f"(torch {torch.__version__}, torch.cuda.is_available() is False)")
    sizes = [int(float(s)) for s in a.sizes.split(",") if s]
    old_sizes = [int(float(s)) for s in a.old_sizes.split(",") if s] if a.old else []
    laws = [x for x in a.laws.split(",") if x]
    for law in laws:
        if law not in LAWS:
            sys.exit(f"fit_throughput: unknown law {law!r}; expected one of {', '.join(LAWS)}")
    import torch

    print(f"torch {torch.__version__}, device {a.device}, {a.threads} thread(s); one fresh process per row")
    print(f"{'law':9} {'path':8} {'devices':>9} {'seconds':>8} {'us/device':>9} {'peak MiB':>9} {'converged':>9} {'cpu s':>7}  coverage (0.95)")
    for law in laws:
        runs = [(n, False) for n in sizes] + [(n, True) for n in old_sizes]
        for n, old in runs:
            cmd = [sys.executable, __file__, "--child", f"{law}:{n}:{int(old)}", "--device", a.device,
                   "--threads", str(a.threads), "--old-commit", a.old_commit]
            res = subprocess.run(cmd, capture_output=True, text=True)
            label = (("autograd" if a.old_commit == OLD_COMMIT else a.old_commit[:8]) if old else "new")
            if res.returncode:
                print(f"{law:9} {label:8} {n:>9} failed: {res.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            cov = " ".join(f"{k} {v:.3f}" for k, v in r["coverage"].items())
            mem = r.get("cuda_peak_mib", r["peak_rss_mib"])
            print(f"{law:9} {label:8} {n:>9} {r['seconds']:8.2f} {1e6 * r['seconds'] / n:9.1f} "
                  f"{mem:9.0f} {r['converged']:9.4f} {r['cpu_seconds']:7.2f}  {cov}", flush=True)


if __name__ == "__main__":
    main()
