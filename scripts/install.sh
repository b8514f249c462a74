#!/bin/sh
# Installs pvectl into its own venv (~/.local/share/pvectl/venv), links the command into
# ~/.local/bin, and installs the man pages and the bash, zsh and fish completions where
# man and the shells look for them:
#   root: /usr/local/share/man/man1, /etc/bash_completion.d,
#         /usr/local/share/zsh/site-functions, /etc/fish/completions
#   user: ~/.local/share/man/man1 (named in ~/.manpath), ~/.local/share/bash-completion,
#         ~/.local/share/zsh/site-functions, ~/.config/fish/completions
# and one marked line in ~/.bashrc (and ~/.zshrc if there is one) that loads the
# completion, so it works without the bash-completion package.
# As root on Debian it first installs python3-venv if it is missing.
# Everything installed is listed in ~/.local/share/pvectl/installed;
# 'scripts/install.sh --uninstall' removes exactly that.
set -eu
cd "$(dirname "$0")/.."
DATA="${XDG_DATA_HOME:-$HOME/.local/share}/pvectl"
MANIFEST="$DATA/installed"
MARK="# added by pvectl's scripts/install.sh"

uninstall() {
    if [ ! -f "$MANIFEST" ]; then
        echo "pvectl: nothing to uninstall ($MANIFEST not found)" >&2
        exit 0
    fi
    while IFS=' ' read -r kind path; do
        case "$kind" in
            file) rm -f "$path" ;;
            dir) rm -rf "$path" ;;
            line)
                if [ -f "$path" ]; then
                    sed -i "\|$MARK|d" "$path"
                    [ -s "$path" ] || rm -f "$path" # it held only our line
                fi
                ;;
        esac
    done <"$MANIFEST"
    rm -f "$MANIFEST"
    rmdir "$DATA" 2>/dev/null || true
    echo "pvectl uninstalled"
}

if [ "${1:-}" = "--uninstall" ]; then
    uninstall
    exit 0
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! python3 -c 'import ensurepip' 2>/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
mkdir -p "$DATA"
[ -x "$DATA/venv/bin/python" ] || python3 -m venv "$DATA/venv"
"$DATA/venv/bin/pip" install -q .
: >"$MANIFEST.new"
record() { echo "$1 $2" >>"$MANIFEST.new"; }
record dir "$DATA/venv"

put() { # put SOURCE DIRECTORY [NAME]: copy a file and record it
    mkdir -p "$2"
    install -m 644 "$1" "$2/${3:-$(basename "$1")}"
    record file "$2/${3:-$(basename "$1")}"
}

add_line() { # add_line FILE TEXT: append TEXT (marked) to FILE once, and record it
    if ! grep -qsF "$MARK" "$1"; then
        printf '%s %s\n' "$2" "$MARK" >>"$1"
    fi
    record line "$1"
}

mkdir -p "$HOME/.local/bin"
ln -sf "$DATA/venv/bin/pvectl" "$HOME/.local/bin/pvectl"
record file "$HOME/.local/bin/pvectl"

if [ "$(id -u)" = 0 ]; then
    MAN1=/usr/local/share/man/man1
    BASH_DIR=/etc/bash_completion.d
    ZSH_DIR=/usr/local/share/zsh/site-functions
    FISH_DIR=/etc/fish/completions
else
    SHARE="${XDG_DATA_HOME:-$HOME/.local/share}"
    MAN1="$SHARE/man/man1"
    BASH_DIR="$SHARE/bash-completion/completions"
    ZSH_DIR="$SHARE/zsh/site-functions"
    FISH_DIR="${XDG_CONFIG_HOME:-$HOME/.config}/fish/completions"
    # man-db searches ~/.local/share/man only when ~/.local/bin is on PATH: name it in
    # ~/.manpath so 'man pvectl' works either way.
    add_line "$HOME/.manpath" "MANDATORY_MANPATH $SHARE/man"
fi
for page in man/*.1; do
    put "$page" "$MAN1"
done
put completions/pvectl.bash "$BASH_DIR" pvectl
put completions/_pvectl "$ZSH_DIR"
put completions/pvectl.fish "$FISH_DIR"
add_line "$HOME/.bashrc" "[ -r '$BASH_DIR/pvectl' ] && . '$BASH_DIR/pvectl'"
if [ -f "$HOME/.zshrc" ]; then
    add_line "$HOME/.zshrc" "fpath=('$ZSH_DIR' \$fpath); autoload -Uz _pvectl; (( \$+functions[compdef] )) && compdef _pvectl pvectl"
fi
if [ -f "$MANIFEST" ]; then # keep what an earlier install recorded (e.g. a page since removed)
    sort -u "$MANIFEST" "$MANIFEST.new" >"$MANIFEST.tmp" && mv "$MANIFEST.tmp" "$MANIFEST.new"
fi
mv "$MANIFEST.new" "$MANIFEST"
echo "pvectl installed: $HOME/.local/bin/pvectl, man pages in $MAN1, completions for bash, zsh and fish"
echo "(scripts/install.sh --uninstall removes them; a new shell picks up the completion)"
