#!/bin/sh
# man.sh STARLING VERSION: writes starling(1) to stdout, generated from the
# binary's own help tables: `starling help` gives the NAME and the list of
# sub-commands, each `starling CMD --help` (the st_opt table that also parses
# the options) gives a section with its usage, text and options. The page
# can therefore never disagree with --help.
set -e
bin="$1"
version="$2"
# troff: a leading . or ' would start a request; backslashes are escapes.
esc() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }
date=$(date -u +%Y-%m-%d)
printf '.TH STARLING 1 "%s" "starling %s" "User Commands"\n' "$date" "$version"
printf '.SH NAME\nstarling \\- ad-audience targeting engine (implicit ALS, Redis-protocol server)\n'
printf '.SH SYNOPSIS\n.B starling\n.I COMMAND\n[options]\n'
printf '.SH DESCRIPTION\n'
"$bin" help | sed -n '3,4p' | esc
printf '.PP\nExit codes: 0 success, 1 runtime error, 2 usage error.\n'
printf '.SH COMMANDS\n'
"$bin" help | sed -n '/^commands:/,/^$/p' | sed '1d;/^$/d' | while read -r name summary; do
    printf ".TP\n.B %s\n%s\n" "$name" "$summary"
done
"$bin" help | sed -n '/^commands:/,/^$/p' | sed '1d;/^$/d' | while read -r name summary; do
    case "$name" in help|version) continue ;; esac
    printf '.SH "STARLING %s"\n' "$(echo "$name" | tr a-z A-Z)"
    printf '.nf\n'
    "$bin" "$name" --help | esc
    printf '.fi\n'
done
printf '.SH FILES\nThe documents are installed under share/doc/starling: README.md, PROTOCOL.md (every\nserver command), OPERATIONS.md, FORMAT.md, TRAINING.md, EVALUATION.md, SCALING.md.\n'
