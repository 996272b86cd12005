"""``skorchlite backbones``: every source's backbones, or one backbone's layers."""

from __future__ import annotations

import argparse

RANDOM_INIT_LABEL = "random initialisation, not pretrained"


def backbones_command(args: argparse.Namespace) -> int:
    """``skorchlite backbones``: list each source's backbones and whether they work offline, or one backbone's layers.

    Runs on the parsed command line (:func:`skorchlite.cli.build_parser`)
    and returns the exit status, as every verb does.
    """
    from ..backbones import list_layers
    from ..backbones.registry import SOURCES, offline_backbones

    if args.layers is not None:
        nodes, shortcuts = list_layers(args.layers)
        print(f"Shortcuts of {args.layers} (--layer NAME, or layer=NAME in Python):")
        for shortcut, members in shortcuts.items():
            print(f"  {shortcut:12} {', '.join('(penultimate features)' if m is None else m for m in members)}")
        print(f"Nodes ({len(nodes)}), from input to output (any of them, or several, as --layer A B ...):")
        for node in nodes:
            print(f"  {node}")
        return 0
    total = offline_count = 0
    for source in SOURCES:
        names = sorted(source.names())
        offline = set(offline_backbones(source))
        total, offline_count = total + len(names), offline_count + len(offline)
        print(f"{source.title}: {len(offline)} of {len(names)} offline now")
        for name in names:
            if not args.offline or name in offline:
                print(f"  {name:26} {'offline: weights here' if name in offline else 'weights not on this machine'}")
    print(
        "Also, from Python: any torch.nn.Module, an (architecture, checkpoint path) pair, and "
        f"weights=None ({RANDOM_INIT_LABEL}) for any name above; see docs/backbones.md."
    )
    print(f"{offline_count} of {total} backbones work offline here.")
    return 0
