"""sumflow: the client and operator command of the sumflow adder and accumulator.

    sumflow add 40 2 [--id UUID]      AddNumbers on the adder (a fresh UUID when --id is absent)
    sumflow total                     the accumulator's running total
    sumflow summations --limit 10     the newest applied summations
    sumflow status                    health, readiness, consumer lag and version of both services
    sumflow rebuild [--audit-only]    rebuild the accumulator's state (on its host, service stopped)
    sumflow backup --to DIR           consistent backup of the accumulator's state (on its host)
    sumflow restore --from DIR        restore a backup (on its host, service stopped)

Exit status: 0 success; 1 failure (status: a service not ready); 2 bad arguments or configuration;
3 the accumulator answered an HTTP error; 10 + the gRPC status code for a failed add (13
INVALID_ARGUMENT, 14 DEADLINE_EXCEEDED, 16 ALREADY_EXISTS, 21 OUT_OF_RANGE, 24 UNAVAILABLE, also
used when a service cannot be reached).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from sumflow.entrypoints.cli_endpoints import CliError, add_endpoint_options
from sumflow.entrypoints.service_args import add_version

PROG = "sumflow"
INT64 = (-(2**63), 2**63 - 1)
MAX_LIMIT = 1000


def int64(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not INT64[0] <= value <= INT64[1]:
        raise argparse.ArgumentTypeError(f"{text} is outside the signed 64-bit range")
    return value


def limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer from 1 to {MAX_LIMIT}")
    return int(text)


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    environ = os.environ if environ is None else environ
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=doc.split("\n\n")[0],
        epilog="\n\n".join(doc.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version(parser)
    common = argparse.ArgumentParser(add_help=False)
    add_endpoint_options(common, environ)
    common.add_argument("--json", action="store_true", help="print the answer as one JSON object")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add = commands.add_parser("add", parents=[common], help="add two numbers (AddNumbers)")
    add.add_argument("first", type=int64, metavar="A", help="first number (signed 64-bit)")
    add.add_argument("second", type=int64, metavar="B", help="second number (signed 64-bit)")
    add.add_argument(
        "--id",
        dest="request_id",
        metavar="UUID",
        help="request id (a UUID, checked by the adder); repeat it to retry safely (default: a fresh UUID)",
    )
    commands.add_parser("total", parents=[common], help="the running total and the count applied")
    summ = commands.add_parser("summations", parents=[common], help="the newest applied summations")
    summ.add_argument("--limit", type=limit, default=20, metavar="N", help=f"how many, 1-{MAX_LIMIT} (default 20)")
    commands.add_parser("status", parents=[common], help="health, readiness, consumer lag and version of both services")
    rebuild = commands.add_parser(
        "rebuild",
        help="rebuild the accumulator's state from its audit log and the topic",
        description="Rebuild the accumulator's state.db from its audit log and the Kafka topic. Run it on the "
        "accumulator's host with the service stopped and its SUMFLOW_* environment (state directory, Kafka, "
        "topic; docs/configuration.md). Progress on stderr, the result on stdout.",
    )
    rebuild.add_argument("--audit-only", action="store_true", help="read only the audit log (the topic is gone)")
    rebuild.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    from sumflow.entrypoints.accumulator_main import add_backup_commands

    add_backup_commands(commands)
    return parser


def _print(args: argparse.Namespace, doc: Any, text: str) -> None:
    print(json.dumps(doc) if args.json else text, flush=True)


def run(args: argparse.Namespace) -> int:
    if args.command in ("backup", "restore"):
        from sumflow.entrypoints.accumulator_main import run_backup_command

        return run_backup_command(PROG, args)
    if args.command == "rebuild":
        from sumflow.entrypoints.rebuild_command import run_rebuild

        return run_rebuild(f"{PROG} rebuild", audit_only=args.audit_only, progress=not args.no_progress)

    from sumflow.entrypoints import cli_read
    from sumflow.entrypoints.cli_endpoints import Endpoints

    endpoints = Endpoints.from_args(args)
    if args.command == "add":
        from sumflow.entrypoints.cli_add import add

        answer = add(endpoints, args.first, args.second, args.request_id)
        _print(args, answer.json(), answer.text())
    elif args.command == "total":
        doc = cli_read.total(endpoints)
        _print(args, doc, cli_read.format_total(doc))
    elif args.command == "summations":
        rows = cli_read.summations(endpoints, args.limit)
        _print(args, rows, cli_read.format_summations(rows))
    elif args.command == "status":
        statuses = [cli_read.adder_status(endpoints), cli_read.accumulator_status(endpoints)]
        _print(args, {s.name: s.json() for s in statuses}, cli_read.format_status(statuses))
        return 0 if all(s.ready for s in statuses) else 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CliError as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
