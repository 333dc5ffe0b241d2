"""`--help` and `--version` of the console scripts, answered before anything else is imported or opened.

The service commands take no options of their own (they are configured by SUMFLOW_* environment
variables); their help lists those variables with defaults, read from config.py.
"""

from __future__ import annotations

import argparse

import sumflow


def version_text(prog: str) -> str:
    return f"{prog} {sumflow.__version__}"


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=version_text(parser.prog))


def settings_epilog(service: str) -> str:
    """The environment variables `service` ("adder" or "accumulator") reads, one per line."""
    from sumflow.config import describe_settings

    described = describe_settings()
    lines = ["environment (full reference: docs/configuration.md):"]
    for setting in described["both"] + described[service]:
        lines.append(f"  {setting.name:34} default {setting.default.replace('`', '')}")
    return "\n".join(lines)


def service_parser(prog: str, service: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=settings_epilog(service),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version(parser)
    return parser
