#!/bin/sh
# An exec function: the payload is stdin, stdout is the result.
echo "hello from $(uname -s), payload was $(wc -c) bytes; method $REQUEST_METHOD"
