"""`hmmrnn completion bash|zsh`: shell completion generated from the command's own parser.

Commands, their flags, presets, devices, analysis names (after `analyze MODEL`) with each
analysis' parameters, and figure names (after `export MODEL`) all come from the same parser and
registries the command uses, so the completion never lists a flag that does not exist. Install:

    hmmrnn completion bash > ~/.local/share/bash-completion/completions/hmmrnn
    # or add to ~/.bashrc (zsh: ~/.zshrc):  eval "$(hmmrnn completion bash)"
"""

from __future__ import annotations

import argparse
import shlex

from hmmrnn import api
from hmmrnn.cli.common import EXIT_OK

FUNCTION = "_hmmrnn_complete"


def register(sub) -> None:
    p = sub.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description=__doc__.split("\n\n")[1],
        epilog=__doc__.split("\n\n")[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=("bash", "zsh"))
    p.set_defaults(func=run_completion)


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return sorted({o for a in parser._actions for o in a.option_strings if o.startswith("--")})


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _words(items) -> str:
    return shlex.quote(" ".join(items))


def script(parser: argparse.ArgumentParser) -> str:
    """The bash completion function for `parser` (zsh runs it through bashcompinit)."""
    commands = _subparsers(parser)
    analyses = {n: [p.flag for p in s.schema] for n, s in api.analyses().items()}
    figures = api.figures()
    figure_flags = {
        n: [p.flag for p in api.figure_schema(n)] for n in figures if api.figure_takes_params(n)
    }
    command_cases = "\n".join(
        f"        {name}) opts={_words(_flags(sub))} ;;" for name, sub in commands.items()
    )
    analysis_cases = "\n".join(
        f'        {n}) opts="$opts "{_words(f)} ;;' for n, f in analyses.items()
    )
    figure_cases = "\n".join(
        f'        {n}) opts="$opts "{_words(f)} ;;' for n, f in figure_flags.items()
    )
    return f"""# hmmrnn completion (bash; zsh: autoload -U bashcompinit && bashcompinit first)
{FUNCTION}() {{
    local cur prev cmd opts
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    cmd="${{COMP_WORDS[1]}}"
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W {_words([*commands, "--help", "--version"])} -- "$cur"))
        return
    fi
    case "$prev" in
        --preset) COMPREPLY=($(compgen -W {_words(api.presets())} -- "$cur")); return ;;
        --device) COMPREPLY=($(compgen -W "auto cpu cuda" -- "$cur")); return ;;
        --engine) COMPREPLY=($(compgen -W "local ray" -- "$cur")); return ;;
        --format) COMPREPLY=($(compgen -W "pdf svg png pdf,svg,png" -- "$cur")); return ;;
    esac
    case "$cmd" in
{command_cases}
    esac
    if [[ $COMP_CWORD -eq 3 && "$cmd" == analyze && "$cur" != -* ]]; then
        COMPREPLY=($(compgen -W {_words(analyses)} -- "$cur")); return
    fi
    if [[ $COMP_CWORD -eq 3 && "$cmd" == export && "$cur" != -* ]]; then
        COMPREPLY=($(compgen -W {_words(figures)} -- "$cur")); return
    fi
    if [[ "$cmd" == analyze ]]; then
        case "${{COMP_WORDS[3]}}" in
{analysis_cases}
        esac
    fi
    if [[ "$cmd" == export ]]; then
        case "${{COMP_WORDS[3]}}" in
{figure_cases}
        esac
    fi
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -o filenames -F {FUNCTION} hmmrnn
"""


def run_completion(args: argparse.Namespace) -> int:
    from hmmrnn.cli import build_parser

    text = script(build_parser())
    if args.shell == "zsh":
        text = "autoload -U +X bashcompinit && bashcompinit\n" + text
    print(text, end="")
    return EXIT_OK
