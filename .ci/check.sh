#!/bin/bash
# check.sh: every test, in order; run by `make check` after `make all`.
# Runs all stages even when one fails, prints a summary with timings, and
# exits non-zero if any stage failed.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$repo"

# The helpers in lib.sh are bash (BASH_SOURCE, local, arrays): a script
# that sources them under /bin/sh (dash on Debian) gets "Bad substitution"
# and repo=/ (bench.sh did, until its shebang was fixed).  Every .ci script
# that sources lib.sh must say bash, and every one must parse.
ci_scripts_are_bash() {
	local f bad=0
	for f in .ci/*.sh .ci/run; do
		if ! bash -n "$f"; then
			echo "$f: does not parse"
			bad=1
		fi
		if grep -q 'lib\.sh' "$f" && [ "$f" != .ci/lib.sh ] &&
			[ "$(head -1 "$f")" != "#!/bin/bash" ]; then
			echo "$f sources lib.sh but its first line is '$(head -1 "$f")', not #!/bin/bash"
			bad=1
		fi
	done
	[ "$bad" -eq 0 ] && echo "every .ci script parses; those sourcing lib.sh run under bash"
	return "$bad"
}

# The module documentation is where the design is explained (memory
# ordering, locking, why each proof exists): its links must resolve, so a
# renamed item cannot leave a comment pointing at nothing.
docs_build_clean() {
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --lib --document-private-items
}

stages=(
	"ci_scripts_are_bash"
	"cargo test --release"
	"cargo test --lib"
	"docs_build_clean"
	".ci/check-elf.sh"
	".ci/install-test.sh"
	".ci/harness.sh"
	".ci/fio.sh"
	".ci/programs.sh"
	".ci/bench.sh --quick"
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
