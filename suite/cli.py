"""The ``gradsuite`` command (also ``python -m suite``).

Subcommands: ``run`` (the main job: every study, written to reports/), ``report`` (the HTML page
of one run, or a comparison of runs), ``check-references`` (our rules against torch.optim),
``check`` (a user's optimizer against a reference), ``check-activation`` (a user's activation
against the exact values), ``bench`` (the roofline), ``list``.
Exit codes: 0 success, 1 a check failed, 2 bad usage or input, 130 interrupted (Ctrl-C), 143
terminated (SIGTERM). Interrupting or terminating ends the worker processes too.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from suite.optim.spec import OPTIMIZERS


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _print_frame(df: pd.DataFrame) -> None:
    with pd.option_context("display.width", 200, "display.max_columns", 30,
                           "display.max_rows", 500, "display.float_format", "{:.3g}".format):
        print(df.to_string(index=False))


def cmd_list(args: argparse.Namespace) -> int:
    from suite.optim import ALIASES, OPTIMIZERS
    from suite.optim.configs import count_by_optimizer

    counts = count_by_optimizer()
    rows = [{"optimizer": n, "torch.optim": s.torch_name, "configs": counts.get(n, 0),
             "defaults": ", ".join(f"{k}={v}" for k, v in s.defaults.items())}
            for n, s in OPTIMIZERS.items()]
    _print_frame(pd.DataFrame(rows))
    print("aliases: " + ", ".join(f"{a} = {r}{h}" for a, (r, h) in ALIASES.items()))
    for kind in ("activations", "losses", "problems"):
        try:
            mod = __import__(f"suite.{kind}", fromlist=["NAMES"])
            print(f"{kind}: {', '.join(mod.NAMES)}")
        except ImportError:
            pass
    return 0


def cmd_check_references(args: argparse.Namespace) -> int:
    from suite.optim import crossval
    from suite.optim.configs import configs_for
    from suite.sweep import set_threads

    set_threads(1)
    configs = [c for c in configs_for(source="torch" if args.quick else None)
               if not args.optimizers or c.optimizer in args.optimizers]
    if not configs:
        print(f"no configuration matches optimizers={args.optimizers}", file=sys.stderr)
        return 2
    frame = crossval.run_table(configs, probes=args.probes, dtypes=args.dtypes,
                               steps=args.steps, jobs=args.jobs, progress=not args.no_progress)
    if args.out:
        from suite.report.load import write_frame

        path = write_frame(frame, args.out)
        print(f"wrote {path}")
    _print_frame(crossval.summary(frame))
    failed = frame[~frame["passed"]]
    n_cfg = frame["config"].nunique()
    print(f"\n{n_cfg} configurations x {len(args.probes)} probes x {len(args.dtypes)} dtypes x "
          f"{frame['backend'].nunique()} backends x torch impls = {len(frame)} comparisons, "
          f"{args.steps} steps each; {len(failed)} disagree")
    if len(failed):
        _print_frame(failed.head(40))
        return 1
    return 0


def _rename(value: str) -> dict[str, str]:
    """``momentum=beta,lr=learning_rate`` -> {"momentum": "beta", "lr": "learning_rate"}."""
    out: dict[str, str] = {}
    for part in _csv(value):
        ref, sep, theirs = part.partition("=")
        if not sep or not ref.strip() or not theirs.strip():
            raise ValueError(
                f"--rename expects reference=theirs pairs such as momentum=beta, got {part!r}")
        out[ref.strip()] = theirs.strip()
    return out


def cmd_check(args: argparse.Namespace) -> int:
    import json

    from suite.conformance import check_optimizer
    from suite.conformance.optimizers import UNIT_ROUNDOFF
    from suite.optim import get_spec
    from suite.probes import PROBES
    from suite.subjects import add_cwd_to_path, load_object
    from suite.sweep import set_threads

    def usage(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    set_threads(1)
    try:
        spec = get_spec(args.reference)
        rename = _rename(args.rename)
    except ValueError as exc:
        return usage(str(exc))
    if args.steps < 1:
        return usage(f"--steps {args.steps}: expected a positive number of steps")
    bad = [d for d in args.dtypes if d not in UNIT_ROUNDOFF]
    if bad or not args.dtypes:
        return usage(f"--dtypes {','.join(args.dtypes) or repr('')}: expected some of "
                     f"{', '.join(UNIT_ROUNDOFF)}")
    bad = [p for p in args.probes if p not in PROBES]
    if bad or not args.probes:
        return usage(f"--probes {','.join(args.probes) or repr('')}: expected some of "
                     f"{', '.join(PROBES)}")
    configs = None
    if args.configs is not None:
        try:
            configs = json.loads(args.configs)
        except ValueError:
            configs = None
        if not (isinstance(configs, list) and all(isinstance(c, dict) for c in configs)):
            return usage(f"--configs must be a JSON list of objects, got {args.configs!r}")
        if not configs:
            return usage("--configs is an empty list: nothing to check")
        for i, c in enumerate(configs):
            if "betas" in c and isinstance(c["betas"], list):
                c["betas"] = tuple(c["betas"])
            try:
                spec.resolve(**c)
            except (TypeError, ValueError) as exc:
                return usage(f"--configs entry {i} {json.dumps(c)}: {exc}")
    unknown = sorted(set(rename) - set(spec.defaults))
    if unknown:
        return usage(f"--rename {', '.join(unknown)}: not a hyperparameter of {spec.name} "
                     f"({', '.join(spec.defaults)})")
    added = add_cwd_to_path()
    try:
        load_object(args.optimizer)
    except ImportError as exc:
        return usage(f"{exc} (the current directory {Path.cwd()} is on the import path)")
    if added:
        print(f"note: the current directory {added} was put on the import path, as python -m "
              "does", file=sys.stderr)
    try:  # construct once up front, so that a broken constructor is a usage error
        import torch

        from suite.conformance.optimizers import accepted_hyperparameters
        from suite.subjects import resolve

        subject = resolve(args.optimizer, reference=spec.name, rename=rename)
        status = accepted_hyperparameters(subject, spec.defaults)
        subject.make([torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))],
                     **{k: v for k, v in spec.defaults.items() if status[k] == "accepted"})
    except Exception as exc:  # noqa: BLE001 - any failure of the user's class is reported
        return usage(f"{args.optimizer} raised on construction: {type(exc).__name__}: {exc}")
    try:
        result = check_optimizer(args.optimizer, reference=spec.name, configs=configs,
                                 steps=args.steps, dtypes=args.dtypes, probes=args.probes,
                                 rename=rename, strict_state=args.strict_state)
    except (TypeError, ValueError) as exc:
        return usage(str(exc))
    print(result)
    cols = ["config", "probe", "dtype", "applicable", "passed", "state_agrees",
            "max_error_param", "max_error_state", "first_bad_step", "quantity", "tol",
            "explained_by"]
    print()
    _print_frame(result.frame[[c for c in cols if c in result.frame]])
    return 0 if result.passed else 1


def cmd_check_activation(args: argparse.Namespace) -> int:
    import json

    from suite import activations
    from suite.conformance import check_activation
    from suite.subjects import add_cwd_to_path, load_object
    from suite.sweep import set_threads

    set_threads(1)
    if args.reference not in activations.ELEMENTWISE:
        print(f"error: --reference {args.reference!r}; expected one of "
              f"{', '.join(activations.ELEMENTWISE)}", file=sys.stderr)
        return 2
    params = {}
    if args.params:
        try:
            params = json.loads(args.params)
        except ValueError:
            params = None
        if not isinstance(params, dict):
            print(f"error: --params must be a JSON object, got {args.params!r}",
                  file=sys.stderr)
            return 2
    add_cwd_to_path()
    try:
        fn = load_object(args.activation)
    except (ImportError, AttributeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = check_activation(fn, reference=args.reference, dtypes=args.dtypes,
                                  device=args.device, points=args.points, **params)
    except (TypeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result)
    cols = ["config", "dtype", "region", "quantity", "passed", "max_ulp", "worst_x",
            "allowed_ulp", "torch_max_ulp"]
    print()
    _print_frame(result.frame[[c for c in cols if c in result.frame]])
    return 0 if result.passed else 1


def cmd_bench(args: argparse.Namespace) -> int:
    import os

    from suite import bench
    from suite.subjects import add_cwd_to_path, resolve

    threads = list(args.threads)
    if args.thread_sweep:
        threads = list(range(1, len(os.sched_getaffinity(0)) + 1))
    subjects = []
    if args.optimizer:
        add_cwd_to_path()
    try:
        bench.check_roofline_args(args.size, threads, args.optimizers, args.repeats)
        subjects = [resolve(p, reference=args.reference) for p in args.optimizer]
    except (ImportError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    frame = bench.roofline(size=args.size, threads=threads, dtype=args.dtype,
                           optimizers=args.optimizers, repeats=args.repeats,
                           progress=not args.no_progress, subjects=subjects,
                           shared=args.shared_arrays)
    cols = ["optimizer", "config", "implementation", "threads", "seconds", "spread", "GB_per_s",
            "fraction_of_ceiling", "fraction_spread", "fraction_of_triad",
            "speedup_vs_best_torch", "speedup_vs_best_torch_per_ceiling", "temporaries",
            "state_bytes_per_param_byte"]
    print(("every implementation steps the same arrays (--shared-arrays); "
           if args.shared_arrays else "each implementation steps its own arrays; ")
          + f"{args.size:,} {args.dtype} elements per step; best of {args.repeats} interleaved "
          "rounds; spread = median / best - 1; fraction_of_ceiling = median over rounds of "
          "(ceiling "
          "time / step time), each step timed right after the ceiling; fraction_spread = half "
          "its interquartile range")
    for t, block in frame.groupby("threads", sort=True):
        r0 = block.iloc[0]
        print(f"\nthreads {t} (torch {r0['torch_threads']}, numba {r0['numba_threads']}): triad "
              f"{r0['triad_GB_per_s']:.2f} GB/s counting the write-allocate read (STREAM's "
              f"count: {r0['triad_stream_GB_per_s']:.2f}); in-place update "
              f"{r0['update_GB_per_s']:.2f} GB/s")
        ceil = block.dropna(subset=["ceiling_GB_per_s"]).groupby("optimizer", sort=False)[
            "ceiling_GB_per_s"]
        print("ceiling (each implementation's own arrays streamed in place, paired with its "
              "step), lowest-highest over implementations: "
              + "; ".join(f"{o} {c.min():.1f}-{c.max():.1f} GB/s" for o, c in ceil))
        _print_frame(block[cols])
    if args.bound:
        print("\nwhat bounds each Numba step: ns per element in cache vs from memory vs the "
              "ceiling's (memory floor)")
        bound = pd.concat([bench.compute_bound(args.optimizers, t, large=args.size,
                                               dtype=args.dtype, repeats=args.repeats)
                           for t in threads], ignore_index=True)
        _print_frame(bound)
    if args.out:
        from suite.report.load import write_frame

        print(f"wrote {write_frame(frame, args.out)}")
    return 0


def cmd_bench_activations(args: argparse.Namespace) -> int:
    from suite import bench

    try:
        for t in args.threads:
            bench.check_activation_args(args.activations or None, args.size, t, args.repeats)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    frames = [bench.activation_speed(args.activations or None, args.size, t, args.repeats)
              for t in args.threads]
    frame = pd.concat(frames, ignore_index=True)
    print(f"forward + backward, {args.size:,} float32 elements; speedup = torch's time / ours "
          f"(> 1: ours faster), median over {args.repeats} rounds of adjacent timings; spread "
          "= half its interquartile range")
    wide = frame.pivot_table(index=["activation", "threads"], columns="implementation",
                             values="speedup", sort=False)
    wide["spread (fused)"] = frame[frame.implementation == "numba-fused"].set_index(
        ["activation", "threads"])["spread"]
    print(wide.reset_index().to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    if args.out:
        from suite.report.load import write_frame

        print(f"wrote {write_frame(frame, args.out)}")
    return 0


def cmd_bench_ratios(args: argparse.Namespace) -> int:
    from pathlib import Path

    from suite import bench
    from suite.report.load import read_benchmark_json

    frame = bench.speedups(read_benchmark_json(Path(args.json)), stat=args.stat)
    if args.groups:
        frame = frame[frame["group"].str.contains(args.groups, regex=True)]
    print(f"{args.stat} time of ours and each other implementation's time / ours "
          f"(> 1: ours faster), from {args.json}")
    if args.markdown:
        cells = frame.map(lambda x: f"{x:.2f}" if isinstance(x, float) else str(x))
        print("| " + " | ".join(frame.columns) + " |")
        print("|" + "---|" * len(frame.columns))
        for row in cells.itertuples(index=False):
            print("| " + " | ".join(row).replace("nan", "-") + " |")
    else:
        print(frame.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    return 0


DESCRIPTION = """\
gradsuite: reference optimizers and activations that agree with torch.optim, conformance checks
for your own optimizer, convergence, gradient-statistics and speed studies, one HTML report.

  gradsuite run                  every study -> reports/run-<time>/index.html
  gradsuite report [RUN ...]     rebuild the newest run's page, or compare runs
  gradsuite check MOD:CLASS --reference adam   check your optimizer against a reference
  gradsuite check-activation MOD:FN --reference gelu   check your activation
  gradsuite check-references     our references against torch.optim
  gradsuite bench                the roofline: optimizer steps vs memory bandwidth
  gradsuite bench-activations    activations' forward + backward vs torch
  gradsuite bench-ratios FILE    speed ratios from a pytest-benchmark JSON file
  gradsuite list                 optimizers, configurations, activations, losses, problems

Exit codes: 0 success, 1 a check failed, 2 bad usage or input, 130 interrupted, 143 terminated.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradsuite", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="optimizers, configurations and other names",
                       description="List the reference optimizers (torch.optim twin, number "
                       "of configurations, defaults), aliases, activations, losses and test "
                       "problems.")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("check-references",
                       help="cross-validate our rules (numpy, numba, torch) against torch.optim")
    p.add_argument("--optimizers", type=_csv, default=[],
                   help="comma-separated subset of the references (default: all)")
    p.add_argument("--probes", type=_csv, default=["scaled", "model"],
                   help="comma-separated gradient probes: scaled (magnitudes 1e-8..1e3), "
                   "model (a small network's gradients) (default: both)")
    p.add_argument("--dtypes", type=_csv, default=["float64", "float32"],
                   help="comma-separated dtypes (default float64,float32)")
    p.add_argument("--steps", type=int, default=200,
                   help="optimizer steps per comparison (default 200)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--quick", action="store_true", help="PyTorch's own configurations only")
    p.add_argument("--out", help="write the full frame here (.csv or .parquet)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_check_references)

    p = sub.add_parser("bench", help="the roofline: optimizer steps vs streaming bandwidth")
    p.add_argument("--size", type=int, default=1 << 23,
                   help="elements per step (default 8388608 = 2**23, far beyond the caches)")
    p.add_argument("--threads", type=int, nargs="+", default=[1],
                   help="thread count(s) for torch and Numba, e.g. --threads 1 2 (Numba "
                        "needs NUMBA_NUM_THREADS >= the largest)")
    p.add_argument("--thread-sweep", action="store_true",
                   help="measure at every thread count from 1 to the cores available")
    p.add_argument("--bound", action="store_true",
                   help="also time each Numba step in cache and from memory against the "
                        "ceiling: compute- or memory-bound, per thread count")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="element type (default float32)")
    p.add_argument("--optimizers", type=_csv, default=list(OPTIMIZERS),
                   help=f"comma-separated references (default: all {len(OPTIMIZERS)})")
    p.add_argument("--repeats", type=int, default=7,
                   help="timed repeats per step; the median is reported (default 7)")
    p.add_argument("--out", help="write the frame here (.csv or .parquet)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--shared-arrays", action="store_true",
                   help="every implementation of a reference steps the same arrays, so that "
                        "the time ratios compare kernels, not where each one's arrays sit in "
                        "memory (which moves a step's bandwidth by up to 2x)")
    p.add_argument("--optimizer", action="append", default=[], metavar="MODULE:CLASS",
                   help="your optimizer (repeatable): a row beside the references")
    p.add_argument("--reference", help="the reference your optimizer is timed against "
                   "(torch's fastest implementation of it), e.g. adam")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("bench-activations",
                       help="activations' forward + backward: ours vs torch, paired timings")
    p.add_argument("--activations", type=_csv, default=[], help="comma-separated subset")
    p.add_argument("--size", type=int, default=1_000_000,
                   help="float32 elements per call (default 1000000)")
    p.add_argument("--threads", type=int, nargs="+", default=[1],
                   help="thread count(s) for torch and Numba (default 1)")
    p.add_argument("--repeats", type=int, default=9,
                   help="rounds of adjacent timings; the median ratio is reported (default 9)")
    p.add_argument("--out", help="write the frame here (.csv or .parquet)")
    p.set_defaults(func=cmd_bench_activations)

    p = sub.add_parser("bench-ratios",
                       help="speed ratios (others / ours) from a pytest-benchmark JSON file")
    p.add_argument("json", help="pytest-benchmark --benchmark-json output")
    p.add_argument("--stat", default="median", choices=["median", "min", "mean"],
                   help="which statistic of each benchmark to compare (default median)")
    p.add_argument("--groups", help="regular expression the group must contain")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(func=cmd_bench_ratios)

    p = sub.add_parser(
        "check", help="check an optimizer (module:Class) against a reference",
        description="Check an optimizer against a gradsuite reference rule, step by step. The "
                    "current directory is put on the import path, as python -m does. Exit 0: "
                    "the parameters agree (and, with --strict-state, the state too); 1: they "
                    "disagree; 2: bad input.")
    p.add_argument("optimizer", help="import path of a class or factory, e.g. "
                   "mypackage.optim:MyAdam (imported from the current directory too)")
    p.add_argument("--reference", required=True, help="the rule to compare with: "
                   f"{', '.join(OPTIMIZERS)} (see gradsuite list)")
    p.add_argument("--steps", type=int, default=200,
                   help="steps per run (default 200)")
    p.add_argument("--dtypes", type=_csv, default=["float64", "float32"],
                   help="comma-separated: float64, float32, bfloat16, float16 "
                        "(default float64,float32)")
    p.add_argument("--probes", type=_csv, default=["scaled", "decay", "sparse", "model"],
                   help="comma-separated gradient probes (default all four: scaled, decay, "
                        "sparse, model)")
    p.add_argument("--configs", help="JSON list of hyperparameter dicts (torch.optim's names) "
                   "to check instead of the default configurations, e.g. '[{\"lr\": 0.01}]'")
    p.add_argument("--rename", default="",
                   help="map the reference's hyperparameter names to the optimizer's, e.g. "
                        "momentum=beta,lr=learning_rate")
    p.add_argument("--strict-state", action="store_true",
                   help="also require the state under torch.optim's names to mean what "
                        "torch's does (state_dict interchangeability)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("check-activation",
                       help="check an activation (module:fn) against the exact values")
    p.add_argument("activation", help="import path of a torch function, nn.Module class or "
                   "autograd.Function, e.g. mypackage.act:my_gelu (the current directory is "
                   "importable)")
    p.add_argument("--reference", required=True,
                   help="the built-in activation it implements: sigmoid, tanh, relu, "
                   "leaky_relu, elu, selu, softplus, gelu or silu")
    p.add_argument("--params", help='JSON object of parameters to check with instead of the '
                   'default set, e.g. \'{"approximate": "tanh"}\'')
    p.add_argument("--dtypes", type=_csv, default=["float64", "float32"],
                   help="comma-separated dtypes to check (default float64,float32)")
    p.add_argument("--device", default="cpu", help="torch device to run on (default cpu)")
    p.add_argument("--points", type=int, default=120,
                   help="density of the input grid (default 120 per segment)")
    p.set_defaults(func=cmd_check_activation)

    from suite import runjob

    runjob.add_parsers(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanups run (worker processes end)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


def main(argv: Sequence[str] | None = None) -> int:
    from suite.sweep import MissingExtraError

    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: leave SIGTERM alone
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args))
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MissingExtraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
