#!/bin/sh
# Entrypoint of the bootstrap-repro image.  Containers run as the invoking user's uid:gid, which
# has no home in the image: make sure HOME is writable, then run the command (PID 1 is --init).
set -e
if [ -z "${HOME:-}" ] || [ "$HOME" = "/" ] || [ ! -w "$HOME" ]; then
    export HOME=/tmp
fi
exec "$@"
