#!/bin/bash
# fio.sh: Debian's fio, ioengine=libaio, run with LD_PRELOAD of our library.
# Each job writes a file under a temp dir and verifies every block it wrote
# (verify=crc32c, verify_fatal): O_DIRECT at iodepth 1 and 32, O_DIRECT with
# userspace_reap=1 (fio reads the completion ring itself), and buffered I/O.
# Asserts, per job, from --output-format=json: exit status 0, error 0,
# bytes written > 0 and bytes read back for verification == bytes written;
# and, from LD_DEBUG, that fio's io_* calls were bound to our library.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
need_built
need_cmd fio jq

work=$(integ_tmp fio) || exit 1
size=${FIO_SIZE:-64M}
failures=0

# Direct I/O must work where we put the files, or the direct jobs prove nothing.
if ! dd if=/dev/zero of="$work/probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
	echo "fio: FAIL: O_DIRECT does not work in $work (tmpfs?); set INTEG_TMP to a disk directory"
	exit 1
fi
rm -f "$work/probe"

# job NAME fio-options...: run one verified job preloaded, check its JSON.
job() {
	local name=$1 rc t0
	shift
	t0=$(now)
	preloaded "$work/ld-$name" fio --output-format=json --output="$work/$name.json" \
		--name="$name" --directory="$work" --filename_format='$jobname.$jobnum.dat' --ioengine=libaio --size="$size" \
		--bs=4k --rw=randwrite --verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0 "$@" \
		>"$work/$name.log" 2>&1
	rc=$?
	local err wbytes rbytes line
	# fio may print warnings ahead of the JSON document in the same file.
	sed -n '/^{/,$p' "$work/$name.json" >"$work/$name.clean.json"
	err=$(jq '[.jobs[].error] | add' "$work/$name.clean.json" 2>/dev/null)
	wbytes=$(jq '[.jobs[].write.io_bytes] | add' "$work/$name.clean.json" 2>/dev/null)
	rbytes=$(jq '[.jobs[].read.io_bytes] | add' "$work/$name.clean.json" 2>/dev/null)
	line="$name ($*): exit $rc, error ${err:-?}, written ${wbytes:-?} B, verified ${rbytes:-?} B, $(elapsed "$t0")s"
	if [ "$rc" -ne 0 ] || [ "${err:-x}" != 0 ] || ! [ "${wbytes:-0}" -gt 0 ] 2>/dev/null ||
		[ "${rbytes:-x}" != "${wbytes:-y}" ] || grep -qiE 'verify.*(bad|fail|mismatch)' "$work/$name.log"; then
		echo "  FAIL: $line"
		sed 's/^/      | /' "$work/$name.log" | tail -20
		failures=$((failures + 1))
	else
		echo "  ok: $line"
	fi
	assert_bound "$work/ld-$name" "$name" io_submit io_getevents || failures=$((failures + 1))
}

echo "fio: $(fio --version), files in $work, $size per job"
job direct-qd1 --direct=1 --iodepth=1
job direct-qd32 --direct=1 --iodepth=32
# userspace_reap only takes effect when reaping with min_nr 0.
job direct-qd32-userspace-reap --direct=1 --iodepth=32 --userspace_reap=1 \
	--iodepth_batch_complete_min=0 --iodepth_batch_complete_max=32
job buffered-qd16 --direct=0 --iodepth=16
# Mixed sizes and sequential writes, two jobs (own files) as threads of one process.
job direct-seq-bs-mix-2jobs --direct=1 --iodepth=16 --rw=write --bsrange=4k-128k \
	--numjobs=2 --thread --group_reporting=0

rm -f "$work"/*.dat
if [ "$failures" -ne 0 ]; then
	echo "fio: FAIL ($failures)"
	exit 1
fi
echo "fio: PASS"
