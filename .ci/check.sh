#!/bin/bash
# check.sh: every test, in order; run by `make check` after `make all`.
# Runs all stages even when one fails, prints a summary with timings, and
# exits non-zero if any stage failed.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$repo"

stages=(
	"cargo test --release"
	"cargo test --lib"
	".ci/check-elf.sh"
	".ci/install-test.sh"
	".ci/harness.sh"
	".ci/fio.sh"
	".ci/programs.sh"
)
results=()
failed=0
started=$(now)
for cmd in "${stages[@]}"; do
	echo
	echo "======== $cmd"
	t0=$(now)
	if $cmd; then status=PASS; else status=FAIL; failed=$((failed + 1)); fi
	results+=("$(printf '  %-4s %7ss  %s' "$status" "$(elapsed "$t0")" "$cmd")")
done

echo
echo "======== make check summary ($(elapsed "$started")s)"
printf '%s\n' "${results[@]}"
if [ "$failed" -ne 0 ]; then
	echo "make check: FAILED ($failed of ${#stages[@]} stages)"
	exit 1
fi
echo "make check: all ${#stages[@]} stages passed"
