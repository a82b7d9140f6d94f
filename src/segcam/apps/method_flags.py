"""Command-line flags made from the registered methods' options.

Every option of every method in :data:`segcam.methods.METHODS` becomes one flag (``n_masks`` →
``--n-masks``) whose help comes from the option itself; an option several methods share (say
``batch_size``) is one flag.  A method registered later — in a plugin, or a test — shows up the
next time a parser is built, with no change here.  ``segcam explain`` passes the flags to its one
method, ``segcam batch`` to each of its methods that takes them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SegcamError
from ..methods import METHODS, Spec


@dataclass(frozen=True)
class Flag:
    """One generated flag: the option it sets and, per method taking it, that method's spec."""

    flag: str
    option: str
    specs: dict[str, Spec]


def add_method_flags(parser: argparse.ArgumentParser, reserved: set[str]) -> None:
    """Add a flag for every method option to ``parser``; ``reserved`` are the parser's other
    destinations (an option clashing with one gets a ``--METHOD-OPTION`` flag instead)."""
    by_option: dict[str, dict[str, Spec]] = {}
    for method, cls in sorted(METHODS.items()):
        for spec in cls.options():
            by_option.setdefault(spec.name, {})[method] = spec
    group = parser.add_argument_group("method options (each names the methods it applies to)")
    flags: dict[str, Flag] = {}
    for option, specs in sorted(by_option.items()):
        groups = [specs] if option not in reserved else [{m: s} for m, s in specs.items()]
        for users in groups:
            prefix = "" if option not in reserved else f"{next(iter(users))}-"
            flag = "--" + (prefix + option).replace("_", "-")
            dest = "method_" + (prefix + option).replace("-", "_").replace("+", "p")
            group.add_argument(flag, dest=dest, default=None, metavar=_metavar(users), help=_help(users))
            flags[dest] = Flag(flag, option, users)
    parser.set_defaults(method_flags=flags)


def method_options(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The options of ``method`` given on the command line, parsed and checked by their kinds;
    a flag given for a method that does not take it is an error naming the methods that do."""
    return methods_options(args, [method])[method]


def methods_options(args: argparse.Namespace, methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Method name → its options given on the command line, for each of ``methods``: a flag goes
    to every one of them that takes it, parsed and checked by that method's kind; a flag that none
    of them takes is an error naming the methods that do."""
    options: dict[str, dict[str, Any]] = {method: {} for method in methods}
    for dest, flag in getattr(args, "method_flags", {}).items():
        text = getattr(args, dest, None)
        if text is None:
            continue
        users = [method for method in methods if method in flag.specs]
        if not users:
            raise SegcamError(f"{flag.flag} applies to {', '.join(flag.specs)}, not to {' or '.join(methods)}; "
                              f"select one of the methods it applies to, or drop {flag.flag}.")
        for method in users:
            options[method][flag.option] = flag.specs[method].kind.parse(text, flag.flag)
    return options


def _help(users: dict[str, Spec]) -> str:
    methods = ", ".join(users)
    first = next(iter(users.values()))
    if all(s.help == first.help and s.default == first.default for s in users.values()):
        text = f"{first.help or 'option'} ({first.kind.describe()}; default {_shown(first.default)}) [{methods}]"
    else:
        text = "; ".join(f"{m}: {s.help} ({s.kind.describe()}; default {_shown(s.default)})" for m, s in users.items())
    return text.replace("%", "%%")


def _metavar(users: dict[str, Spec]) -> str:
    return next(iter(users.values())).name.upper()


def _shown(default: Any) -> str:
    if default is None:
        return "none"
    if isinstance(default, tuple):
        return "x".join(map(str, default))
    return str(default)
