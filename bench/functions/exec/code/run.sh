#!/bin/sh
# Bench function: trivial; ?write writes a file so the call gets a fresh root.
[ "$QUERY_STRING" = write ] && echo x > /tmp/out
echo ok
