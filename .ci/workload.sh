#!/bin/bash
# workload.sh (`make run`): a real workload through the built library: fio
# with ioengine=libaio, O_DIRECT, 4 jobs x iodepth 32 of random writes that
# are then read back and verified (crc32c), with our libaio.so preloaded.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
need_built
need_cmd fio

work=$(integ_tmp workload) || exit 1
echo "make run: fio (libaio engine, O_DIRECT, verify=crc32c) with LD_PRELOAD=$ourlib"
preloaded "$work/ld" fio --name=libaio-rs-workload --directory="$work" --ioengine=libaio \
	--direct=1 --rw=randwrite --bs=4k --size="${RUN_SIZE:-256M}" --numjobs=4 --iodepth=32 \
	--verify=crc32c --verify_fatal=1 --verify_state_save=0 --group_reporting
rc=$?
assert_bound "$work/ld" "fio" io_submit io_getevents || rc=1
rm -f "$work"/*.0
[ $rc -eq 0 ] && echo "make run: workload passed (all data verified)" || echo "make run: workload FAILED"
exit $rc
