"""``advgen-runtime``: sample, describe and serve exported generators without torch.

    advgen-runtime sample model.onnx -n 1000 -o rows.csv --condition category=r2l --seed 0
    advgen-runtime info model.onnx [--json]
    advgen-runtime disguise evade.onnx --attacks rows.csv -o disguised.csv --seed 0
    advgen-runtime serve model.onnx --port 8000 [--host 127.0.0.1] [--max-n 10000] [--workers 8] [--queue 64]
                         [--max-per-client 64]

Written with argparse rather than click so that the runtime installs with onnxruntime, numpy and
pandas alone. Bad input prints one ``advgen-runtime: error: ...`` line and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from advgen.errors import AdvgenError
from advgen.writers import distinct_outputs, output_to_replace, say_replaced
from advgen_export.manifest import ModelError, parse_condition

PROG = "advgen-runtime"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _at_most(limit: int, what: str, minimum: int = 1) -> Callable[[str], int]:
    """An argparse type: an integer in ``minimum..limit`` (``what`` names the limit in the message)."""

    def parse(text: str) -> int:
        value = (_positive if minimum >= 1 else _non_negative)(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"expected at most {limit:,} ({what}), got {value:,}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value <= 3600:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 3600], got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"seed must be in [0, 2**63), got {value}")
    return value


def _sha256(text: str) -> str:
    value = text.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise argparse.ArgumentTypeError(f"expected a sha256: 64 hex digits, got {text[:80]!r}")
    return value


def _condition(text: str) -> str:
    try:
        parse_condition(text)
    except ModelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Sample from advgen generators exported to ONNX.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("model", type=Path, help="the .onnx file written by `advgen export`")
        p.add_argument("--manifest", type=Path, help="its manifest (default: MODEL.json beside the model)")
        p.add_argument("--threads", type=_positive, default=None, help="onnxruntime intra-op threads")
        p.add_argument(
            "--expect-sha256", metavar="HEX", type=_sha256,
            help="refuse the model unless its sha256 is HEX (a hash you got from its publisher)",
        )

    p = sub.add_parser(
        "sample", help="write samples to a file",
        description="Write N samples to a file, one chunk at a time: memory stays the same whatever N, a file "
        "that would not fit on its disk is refused before sampling, and the file appears only once complete.",
    )
    model_args(p)
    p.add_argument("-n", type=_positive, required=True, help="number of samples")
    p.add_argument(
        "-o", "--output", type=Path, required=True,
        help="tables: .csv or .parquet; images and curves: .npz, .npy or .csv, images also a folder of PNGs",
    )
    p.add_argument("--condition", type=_condition, help="KEY=VALUE, e.g. label=normal or category=r2l")
    p.add_argument("--seed", type=_seed, help="seed for reproducible samples")

    p = sub.add_parser(
        "disguise", help="disguise attack rows with an evasion model",
        description="Disguise attack rows with a generator exported from an `advgen evade` run: each row's "
        "modifiable features are rewritten, repaired to the rules of real traffic, and its functional "
        "features are copied bit for bit. No detector is asked anything. Every row is checked before "
        "anything is written, and the file appears only once complete.",
    )
    model_args(p)
    p.add_argument("--attacks", type=Path, required=True,
                   help="attack rows, .csv or .parquet, with the training data's feature columns and label column; "
                   "rows of classes the model was not trained on are written unchanged")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help=".csv or .parquet: the rows' columns, disguised, plus source_row (the row's index in --attacks)")
    p.add_argument("--seed", type=_seed, help="seed for reproducible disguises")

    p = sub.add_parser("info", help="describe a model", description="Describe an exported model.")
    model_args(p)
    p.add_argument("--json", action="store_true", help="print the description as JSON")

    p = sub.add_parser("serve", help="serve samples over HTTP", description="Serve samples over HTTP (JSON).")
    model_args(p)
    p.add_argument("--port", type=_port, default=8000, help="TCP port (0 picks a free one; default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--max-n", type=_at_most(10**8, "samples a request"), default=10_000,
                   help="largest n one request may ask for")
    p.add_argument("--max-body", type=_at_most(16 * 2**20, "16 MiB: a request is a few dozen bytes"), default=64 * 1024,
                   help="largest request body in bytes")
    p.add_argument("--max-response-bytes", type=_at_most(2**30, "1 GiB a response"), default=64 * 1024 * 1024,
                   help="largest response; a larger n is refused before sampling (default 64 MiB)")
    p.add_argument("--workers", type=_at_most(1024, "threads"), default=None,
                   help="requests answered at once (default min(32, 4 x CPUs))")
    p.add_argument("--queue", type=_at_most(65_536, "places", minimum=0), default=64,
                   help="connections waiting for a worker; beyond it clients get 503 (default 64)")
    p.add_argument("--request-timeout", type=_seconds, default=10.0,
                   help="seconds a client has to send its whole request, and to read the answer (default 10)")
    p.add_argument("--max-per-client", type=_at_most(65_536, "connections", minimum=0), default=64,
                   help="connections one address may have sending their request at once; beyond it 429 "
                        "(default 64; 0: no limit, e.g. behind a proxy that limits clients itself)")
    p.add_argument("--max-inflight-bytes", type=_at_most(2**40, "1 TiB"), default=None,
                   help="size bound of all responses being built or sent at once; beyond it 503 (default 256 MiB, "
                        "at least --max-response-bytes; building one takes about 5x its size in memory)")
    p.add_argument("--quiet", action="store_true", help="do not log each request")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ModelError, AdvgenError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG}: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from advgen_export.runtime import load

    model = load(args.model, args.manifest, threads=args.threads or 0, expect_sha256=args.expect_sha256)
    evasion = model.kind == "evasion"
    if evasion and args.command in ("sample", "serve"):
        raise ModelError(
            f"{args.model} is an evasion model (it disguises attack rows, it does not sample): "
            f"use `{PROG} disguise {args.model} --attacks ROWS.csv -o OUT.csv`"
        )
    if args.command == "disguise":
        if not evasion:
            raise ModelError(
                f"{args.model} is a generator that samples, not an evasion model (export an `advgen evade` run "
                f"for that); use `{PROG} sample {args.model} -n N -o OUT`"
            )
        from advgen_export.evasion import read_rows

        distinct_outputs({"-o": args.output}, {"--attacks": args.attacks})
        replaced = output_to_replace(args.output, "-o")
        rows = read_rows(args.attacks)
        progress = _Progress(len(rows), "disguising")
        try:
            out = model.write_disguised(rows, args.output, args.seed, progress=progress.update, source=str(args.attacks),
                                        note=lambda line: print(f"note: {line}", file=sys.stderr))
        finally:
            progress.close()
        say_replaced(replaced, args.output)
        print(f"wrote {len(rows)} rows to {out} (source_row: each row's index in {args.attacks})", file=sys.stderr)
    elif args.command == "sample":
        replaced = output_to_replace(args.output, "-o", folder_ok=model.kind == "image")  # image models write PNG folders
        progress = _Progress(args.n)
        try:
            out = model.write_samples(args.output, args.n, args.condition, args.seed, progress=progress.update)
        finally:
            progress.close()
        say_replaced(replaced, args.output)
        where = f"{out}/ ({args.n} PNG files)" if out.is_dir() else out
        print(f"wrote {args.n} {model.kind} samples to {where}", file=sys.stderr)
    elif args.command == "info":
        info = model.info()
        print(json.dumps(info, indent=2) if args.json else _describe_evasion(info) if evasion else _describe(info))
    elif args.command == "serve":
        from advgen_export.serve import serve

        serve(model, args.host, args.port, max_n=args.max_n, max_body=args.max_body,
              max_response_bytes=args.max_response_bytes, workers=args.workers, queue_size=args.queue,
              request_timeout=args.request_timeout, max_per_client=args.max_per_client,
              max_inflight_bytes=args.max_inflight_bytes, quiet=args.quiet)
    return 0


class _Progress:
    """``sampling 1,310,720/10,000,000 (13%)`` on stderr for large n: redrawn on a terminal, every
    10% otherwise."""

    MIN_N = 200_000

    def __init__(self, n: int, verb: str = "sampling") -> None:
        self.n, self.done, self.shown, self.verb = n, 0, -1, verb
        self.enabled = n >= self.MIN_N
        self.tty = sys.stderr.isatty()

    def update(self, rows: int) -> None:
        self.done += rows
        if not self.enabled:
            return
        percent = 100 * self.done // self.n
        if self.tty:
            sys.stderr.write(f"\r{self.verb} {self.done:,}/{self.n:,} ({percent}%)")
            sys.stderr.flush()
        elif percent // 10 > self.shown:
            self.shown = percent // 10
            print(f"{self.verb} {self.done:,}/{self.n:,} ({percent}%)", file=sys.stderr)

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def _printable(line: str) -> str:
    """``line`` with each control or other non-printable character escaped (``\\x1b``): names a manifest
    carries are printed, and a model someone hands you must not clear the screen or fake a message."""
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in line)


def _describe(info: dict[str, Any]) -> str:
    plugin = info.get("plugin") or {}
    lines = [
        f"model     {info['model']} (opset {info['opset']}, sha256 {info['sha256'][:16]}...)",
        f"plugin    {plugin.get('name', '?')} {plugin.get('version', '?')} (domain version {plugin.get('domain_version', '?')})",
        f"samples   {info['kind']}, latent size {info['z_dim']}, created {info.get('created')}",
    ]
    for out in info["outputs"]:
        lines.append(f"output    {out['name']}: {out.get('dtype')} {out.get('shape')}")
    if "columns" in info:
        lines.append(f"columns   {len(info['columns'])}: {', '.join(info['columns'][:12])}{' ...' if len(info['columns']) > 12 else ''}")
    cond = info.get("conditions")
    if cond:
        lines.append(f"condition {cond['name']} ({len(cond['classes'])} classes)")
        for key, values in cond["accepted"].items():
            shown = ", ".join(values[:12]) + (" ..." if len(values) > 12 else "")
            lines.append(f"  --condition {key}=  {shown}")
    else:
        lines.append("condition none (unconditional model)")
    return "\n".join(_printable(line) for line in lines)


def _describe_evasion(info: dict[str, Any]) -> str:
    plugin = info.get("plugin") or {}
    cols = info["columns"]
    lines = [
        f"model     {info['model']} (opset {info['opset']}, sha256 {info['sha256'][:16]}...)",
        f"plugin    {plugin.get('name', '?')} {plugin.get('version', '?')}",
        f"kind      evasion: disguises attack rows (noise size {info['z_dim']}, created {info.get('created')})",
        f"columns   {len(cols)} features: {', '.join(cols[:12])}{' ...' if len(cols) > 12 else ''}",
        f"label     {info['label']}" + (" (mapped to attack categories)" if info["category_map"] else ""),
        "trained   " + (", ".join(info["trained_classes"]) + ": rows of other classes are written unchanged"
                        if info.get("trained_classes") else "classes not recorded (an older export): every row is disguised"),
        f"threat    {info['threat']['name']}, {info['rules']} rules of real traffic",
    ]
    disguised = info.get("disguised")
    if disguised:
        # the rows it disguises are those of the trained classes: each with its class's mask, or the threat
        # model's default for a class it does not name (other classes' rows are written unchanged)
        for group in disguised:
            classes = group["classes"]
            shown = ", ".join(classes[:6]) + (f", ... ({len(classes)} classes)" if len(classes) > 6 else "")
            if group["mask"] is None:
                lines.append(f"  {shown}: no mask (the threat model names no default), so their rows are refused")
                continue
            up = f", {len(group['increase_only'])} may only grow" if group["increase_only"] else ""
            named = set(info["threat"]["classes"]) - {"(any other class)"}
            whose = " (the threat model's default mask)" if group["mask"] == "default" and named else ""
            lines.append(f"  {shown}: {len(group['modifiable'])} of {len(cols)} columns modifiable{up}{whose}")
    else:
        for cls, what in info["threat"]["classes"].items():
            up = f", {len(what['increase_only'])} may only grow" if what["increase_only"] else ""
            lines.append(f"  {cls}: {len(what['modifiable'])} of {len(cols)} columns modifiable{up}")
    lines.append(f"usage     {PROG} disguise {info['model']} --attacks ROWS.csv -o OUT.csv [--seed N]")
    return "\n".join(_printable(line) for line in lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
