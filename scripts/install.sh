#!/bin/sh
# Installs cairn from an unpacked release tarball (scripts/package.mjs writes
# it): copies this directory to PREFIX (default /opt/cairn) and links `cairn`
# and every `cairn-*` into BINDIR (default /usr/local/bin). Needs neither Node
# (the tree carries its own) nor network. Run it again to upgrade: the old
# tree is replaced, the links are rewritten.
#
# usage: ./install.sh [--prefix DIR] [--bindir DIR]
# exit: 0 installed, 2 usage, 3 a directory is not writable or not usable
set -eu
here=$(cd "$(dirname "$0")" && pwd -P)
prefix=/opt/cairn
bindir=/usr/local/bin
usage() { echo "usage: install.sh [--prefix DIR] [--bindir DIR]   (default /opt/cairn and /usr/local/bin)"; }
err() { echo "install.sh: error: $1" >&2; [ -z "${2:-}" ] || echo "$2" >&2; exit "${3:-3}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) [ $# -ge 2 ] || err "--prefix needs a directory" "$(usage)" 2; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --bindir) [ $# -ge 2 ] || err "--bindir needs a directory" "$(usage)" 2; bindir=$2; shift 2 ;;
    --bindir=*) bindir=${1#--bindir=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) err "unknown argument \"$1\"" "$(usage)" 2 ;;
  esac
done
case $prefix in /*) ;; *) err "--prefix \"$prefix\" is not an absolute path" "give the directory from / (the links point at it)" 2 ;; esac
case $bindir in /*) ;; *) err "--bindir \"$bindir\" is not an absolute path" "give the directory from / (the links point at it)" 2 ;; esac
if [ ! -x "$here/node/bin/node" ] || [ ! -d "$here/bin" ]; then
  err "\"$here\" is not an unpacked cairn release (no node/bin/node or bin/)" "run the install.sh inside the directory the tarball unpacks to"
fi
prefix=${prefix%/}
bindir=${bindir%/}
[ -n "$prefix" ] || err "--prefix / would replace the root directory" "give a directory of its own, e.g. /opt/cairn" 2

# Refuse before changing anything: the parent of PREFIX (or PREFIX itself)
# and BINDIR must be writable by this user.
parent=${prefix%/*}; [ -n "$parent" ] || parent=/
writable() {
  d=$1
  while [ ! -e "$d" ]; do d=${d%/*}; [ -n "$d" ] || d=/; done
  [ -d "$d" ] && [ -w "$d" ]
}
writable "$parent" || err "cannot write \"$parent\" (for $prefix)" "run as root (sudo ./install.sh) or choose --prefix under a directory you own"
writable "$bindir" || err "cannot write \"$bindir\"" "run as root (sudo ./install.sh) or choose --bindir in a directory you own"
[ ! -e "$prefix" ] || [ -d "$prefix" ] || err "\"$prefix\" exists and is not a directory" "remove it or choose another --prefix"
if [ -d "$prefix" ] && [ "$(cd "$prefix" && pwd -P)" = "$here" ]; then
  err "\"$prefix\" is this unpacked tarball itself" "run install.sh from the unpacked tarball elsewhere, or choose another --prefix"
fi
if [ -d "$prefix" ] && [ -n "$(ls -A "$prefix")" ] && [ ! -f "$prefix/VERSION" ]; then
  err "\"$prefix\" is not empty and holds no cairn install (no VERSION)" "choose an empty or new --prefix"
fi
for exe in "$here"/bin/cairn "$here"/bin/cairn-*; do
  name=${exe##*/}
  if [ -e "$bindir/$name" ] && [ ! -L "$bindir/$name" ]; then
    err "\"$bindir/$name\" exists and is not a link" "remove it (another cairn install?) and run install.sh again"
  fi
done

# Copy beside, then swap: a failed copy leaves the old install whole.
mkdir -p "$parent" "$bindir"
new="$prefix.new.$$"
rm -rf "$new"
cp -R "$here" "$new"
rm -rf "$prefix.old.$$"
if [ -d "$prefix" ]; then mv "$prefix" "$prefix.old.$$"; fi
mv "$new" "$prefix"
rm -rf "$prefix.old.$$"

n=0
for exe in "$prefix"/bin/cairn "$prefix"/bin/cairn-*; do
  name=${exe##*/}
  ln -sfn "$exe" "$bindir/$name"
  n=$((n + 1))
done
echo "installed cairn $(cat "$prefix/VERSION") in $prefix; $n commands linked in $bindir"
