#!/usr/bin/env bash
# Run everything CI runs, the same way: servers, formatting, lints, build and all tests.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../.ci/run" "$@"
