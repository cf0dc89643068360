#!/bin/sh
# manpage.sh STARLING: the man page starling(1), made from the binary's own help
# tables (`starling --help` and `starling COMMAND --help` for every command), so the
# page says exactly what the binary does.
set -e
bin=$1
esc() { sed -e 's/\\/\\e/g' -e 's/^\./\\\&./' -e "s/^'/\\\\\&'/"; }
version=$("$bin" version | sed 's/^starling //')
echo ".TH STARLING 1 \"\" \"starling $version\" \"User Commands\""
echo ".SH NAME"
echo "starling \\- an ad-audience targeting engine (implicit-feedback matrix factorization)"
echo ".SH SYNOPSIS"
echo ".B starling"
echo "COMMAND [options]"
echo ".SH DESCRIPTION"
echo ".nf"
"$bin" --help | esc
echo ".fi"
echo ".SH COMMANDS"
for cmd in $("$bin" --help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {print $1} on && /^$/ {on = 0}'); do
    [ "$cmd" = help ] || [ "$cmd" = version ] && continue
    echo ".SS $cmd"
    echo ".nf"
    "$bin" "$cmd" --help | esc
    echo ".fi"
done
echo ".SH FILES"
echo "Models, journals and the page are described in the documents installed under"
echo "share/doc/starling: README.md, FORMAT.md, PROTOCOL.md, OPERATIONS.md and the rest."
echo ".SH EXIT STATUS"
echo "0 success, 1 runtime error, 2 usage error."
