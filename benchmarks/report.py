"""Rendering of a benchmark result as plain-text or Markdown tables.

:func:`render` takes the ``result`` dict of ``benchmarks.mlp.run_all`` (the
same object ``--json`` writes) and returns the report: the machine, the
matmul ceilings, one training table per batch size, prediction, memory (with
``--memory``) and issue 4's targets. ``markdown=True`` gives ``###`` headings
and pipe tables ready to paste into ``benchmarks/results/<benchmark>.md``.
"""

from __future__ import annotations

TIME_HEADS = ["contender", "dtype", "device", "n", "median s", "min s", "x hand f32",
              "x torch", "GFLOP/s", "% ceil", "x floor"]


def _fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def _table(headers, rows, markdown, align):
    """A table; ``align`` holds one ``l`` or ``r`` per column."""
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def fmt(cells):
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w)
                         for c, w, a in zip(cells, widths, align))

    return "\n".join([fmt(headers).rstrip(), "-" * (sum(w + 2 for w in widths) - 2)]
                     + [fmt(r).rstrip() for r in rows])


def _library_items(meta) -> list:
    items = []
    if "torch" in meta:
        items.append(("torch", f"{meta['torch']} ({meta['torch_threads']} threads; "
                               f"{meta['torch_blas']})"))
    if "jax" in meta:
        items.append(("jax", f"{meta['jax']} {meta['jax_devices']}"))
    if "cupy" in meta:
        items.append(("cupy", meta["cupy"]))
    if "gpu" in meta:
        items.append(("gpu", meta["gpu"]))
    tps = meta["threadpools"]
    if not isinstance(tps, list):
        return items + [("threadpool", tps)]
    for tp in tps:
        desc = f"{tp['internal_api']} {tp.get('version') or ''}"
        if tp.get("architecture"):
            desc += f", kernel {tp['architecture']}"
        items.append(("threadpool", desc + f", {tp['num_threads']} threads ({tp['library']})"))
    return items


def _machine_section(meta, markdown, h) -> list:
    items = [("date", meta["date"]), ("cpu", meta["cpu"]),
             ("cores", f"{meta['cores_usable']} usable of {meta['cores_logical']}; "
                       f"{meta['memory_gib']} GiB RAM"),
             ("load average",
              f"{meta['loadavg_start']} at start, {meta.get('loadavg_end')} at end"),
             ("contention", f"other processes used {meta.get('other_processes_cores', 0):.2f} "
                            "cores on average during the timed calls; hypervisor steal "
                            f"{meta.get('steal_cores', 0):.2f} cores"),
             ("pause", f"{meta.get('pause_s', 0):g} s untimed before each timed call (--pause)"),
             ("python / numpy", f"{meta['python']} / {meta['numpy']}"),
             ("xpnet", meta.get("xpnet"))]
    items += _library_items(meta)
    if meta.get("threads_limit"):
        items.append(("threads", f"limited to {meta['threads_limit']} by --threads"))
    env = ", ".join(f"{k}={v}" for k, v in meta["env"].items() if v is not None) or "(none set)"
    items += [("environment", env), ("data", meta["data"]), ("command", meta["command"])]
    items += [("note", note) for note in meta.get("notes", [])]
    return [f"{h}Machine"] + [f"- {k}: {v}" if markdown else f"  {k:<15} {v}" for k, v in items]


def _ceiling_section(result, markdown, h) -> list:
    rows = [[c["lib"], c["dtype"], c["device"], f"{c['n']}", f"{c['gflops']:.1f}"]
            for c in result["ceilings"]]
    return ["", f"{h}Matmul ceiling",
            _table(["library", "dtype", "device", "n", "GFLOP/s"], rows, markdown, "lllrr")]


def _time_row(r) -> list:
    return [r["contender"], r["dtype"], r["device"], str(len(r["times_s"])),
            f"{r['median_s']:.3f}", f"{r['min_s']:.3f}",
            _fmt(r["vs_handwritten_f32"], ".2f"), _fmt(r["vs_torch"], ".2f"),
            f"{r['gflops']:.0f}", _fmt(r["pct_ceiling"], ".0f"), _fmt(r["x_floor"], ".2f")]


def _training_sections(result, markdown, h) -> list:
    out = []
    for bs in sorted({r["batch_size"] for r in result["train"]}):
        rows_ = [r for r in result["train"] if r["batch_size"] == bs]
        steps = result["meta"]["n_train"] // bs
        rows = [_time_row(r) + [_fmt(r.get("fit_overhead_s"), ".3f"),
                                _fmt(r["losses"][0] if r["losses"] else None, ".4f")]
                for r in rows_]
        out += ["", f"{h}Training: one epoch, batch {bs} ({steps} steps, "
                    f"{rows_[0]['flop'] / 1e9:.1f} GFLOP nominal)",
                _table(TIME_HEADS + ["fit() s", "loss"], rows, markdown, "lllrrrrrrrrrr")]
    out.append("")
    out.append("(xpnet: the epoch as `fit` times it; `fit() s` is the per-call work around it -- "
               "argument and finite checks, one-hot -- paid once per `fit`, not per epoch. "
               "`loss`: mean loss of the warm-up epoch.)" if markdown else
               "  xpnet: epoch as fit times it; 'fit() s' = per-call overhead (checks, one-hot), "
               "paid once per fit. loss: warm-up epoch's mean loss.")
    return out


def _prediction_section(result, markdown, h) -> list:
    rows = [_time_row(r) for r in result["predict"]]
    return ["", f"{h}Prediction: all {result['meta']['n_train']:,} training rows",
            _table(TIME_HEADS, rows, markdown, "lllrrrrrrrr")]


def _memory_row(m) -> list:
    if "error" in m:
        return [m["contender"], m["dtype"], "-", "-", "-", "-", "-", f"error: {m['error']}"]
    per = m["rss_after_epoch_bytes"]
    return [m["contender"], m["dtype"], str(m["epochs"]),
            f"{m['rss_bytes']['data_loaded'] / 2**20:.0f}",
            f"{per[0] / 2**20:.0f}", f"{per[-1] / 2**20:.0f}",
            f"{m['peak_rss_bytes'] / 2**20:.0f}", f"{m['slope_bytes_per_epoch'] / 2**20:+.2f}"]


def _memory_section(result, markdown, h) -> list:
    if not result.get("memory"):
        return []
    heads = ["contender", "dtype", "epochs", "RSS data MiB", "RSS ep 1 MiB", "RSS last MiB",
             "peak MiB", "MiB/epoch"]
    rows = [_memory_row(m) for m in result["memory"]]
    return ["", f"{h}Memory: full training run in a fresh process (batch 32)",
            _table(heads, rows, markdown, "llrrrrrr")]


def _targets_section(result, markdown, h) -> list:
    if not result.get("targets"):
        return []
    rows = [[("MET" if t["met"] else "missed"), t["target"], t["figure"]]
            for t in result["targets"]]
    return ["", f"{h}Issue 4 targets (this run)", _table(["", "target", "figure"], rows,
                                                          markdown, "lll")]


def render(result, markdown=False) -> str:
    """The whole report of ``result`` as text (``markdown=True``: Markdown)."""
    h = "### " if markdown else ""
    sections = (_machine_section(result["meta"], markdown, h),
                _ceiling_section(result, markdown, h), _training_sections(result, markdown, h),
                _prediction_section(result, markdown, h), _memory_section(result, markdown, h),
                _targets_section(result, markdown, h))
    return "\n".join(line for section in sections for line in section)
