"""Medians and ratios of a side-by-side bench (bench/lib.sh: bench_rounds, bench_summary), one JSON line each.

argv: samples file ("<setup> <metric> <value>" lines), status file ("<setup> unavailable <reason>" lines), spec (JSON):
  bench     the bench's name
  names     {setup: label}
  absolute  true: a line per setup and metric with its median (and an "unavailable" line for a setup that is)
  ratios    [[setup, baseline setup, metric, target or null], ...]; target like ">= 1.0" or "<= 0.8"
"""
import json
import statistics
import sys

METRICS = {"tp1": ("TCP throughput, 1 stream (Gbit/s)", "higher"), "tp4": ("TCP throughput, 4 streams (Gbit/s)", "higher"),
           "tpr1": ("TCP throughput server to client, 1 stream (Gbit/s)", "higher"),
           "tpr4": ("TCP throughput server to client, 4 streams (Gbit/s)", "higher"),
           "rr50": ("TCP_RR p50 (us)", "lower"), "rr99": ("TCP_RR p99 (us)", "lower"),
           "crr50": ("TCP_CRR p50 (us)", "lower"), "crr99": ("TCP_CRR p99 (us)", "lower")}

samples, status = {}, {}
for line in open(sys.argv[1]):
    s, m, v = line.split()
    samples.setdefault((s, m), []).append(float(v))
for line in open(sys.argv[2]):
    s, _, reason = line.rstrip("\n").split(" ", 2)
    status[s] = reason
spec = json.loads(sys.argv[3])
names = spec["names"]


def med(s, m):
    v = samples.get((s, m))
    return statistics.median(v) if v else None


def out(**kw):
    print(json.dumps({"bench": spec["bench"], **kw}))


if spec.get("absolute"):
    for s in names:
        if s in status:
            out(metric=f"{names[s]}: unavailable", plexus=None, baseline=None, ratio=None, better="-",
                unavailable=True, reason=status[s])
            continue
        for m, (label, better) in METRICS.items():
            v = med(s, m)
            out(metric=f"{names[s]}: {label}", plexus=None if v is None else round(v, 3), baseline=0, ratio=None,
                better=better, samples=samples.get((s, m), []))
for p, b, m, target in spec["ratios"]:
    label, better = METRICS[m]
    pv, bv = med(p, m), med(b, m)
    line = dict(metric=f"{names[p]} / {names[b]}: {label}", plexus=None if pv is None else round(pv, 3),
                baseline=None if bv is None else round(bv, 3),
                ratio=round(pv / bv, 3) if pv is not None and bv else None, better=better)
    if target:
        line["target"] = target
        if line["ratio"] is not None:
            op, t = target.split()
            line["met"] = line["ratio"] >= float(t) if op == ">=" else line["ratio"] <= float(t)
    missing = [x for x in (p, b) if x in status]
    if missing:
        line["unavailable"] = "; ".join(f"{names[x]}: {status[x]}" for x in missing)
    out(**line)
