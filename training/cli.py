"""The ``pear-train`` command: PEAR's training stages, one subcommand each.

Torch is imported only by the subcommand that runs, so ``pear-train --help`` answers at once.
Errors the user can fix print one ``error: ...`` line and exit with their kind's code
(``backend.errors``).
"""

from __future__ import annotations

import argparse
import sys

from backend.errors import PearError, describe, exit_code
from backend.paths import route_caches

from .config import CONFIG_DIR, as_json, load_config


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help=f"a TOML or YAML file (shipped: {CONFIG_DIR})")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override one field, e.g. --set optim.lr=1e-4 (repeatable)")


def _config(args: argparse.Namespace) -> int:
    print(as_json(load_config(args.config, args.set)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pear-train",
        description="Train the PEAR regressor: data engine, stage 1 (parameters and "
                    "keypoints), evaluation. docs/training.md has the recipe.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config = commands.add_parser("config", help="print a configuration as a run would use it "
                                 "(defaults, then the file, then the --set overrides)")
    _add_config_arguments(config)
    config.set_defaults(handler=_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    route_caches()
    try:
        return args.handler(args)
    except PearError as error:
        print(describe(error), file=sys.stderr)
        return exit_code(error)


if __name__ == "__main__":
    sys.exit(main())
