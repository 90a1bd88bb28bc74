"""Run a command; print (one JSON line) its wall time, CPU time (with the
children it waited for), peak RSS, exit status and output.

    python tools/benchmarks/_launcher.py COMMAND [ARG...]

:func:`tools.benchmarks._harness.run_command` starts every measured command
through this small process: Linux counts a parent's memory in a child's
``ru_maxrss`` when the child was forked from it.
"""
import json
import os
import subprocess
import sys
import time


def main(argv):
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    out = proc.stdout.read().decode(errors='replace')
    _, status, use = os.wait4(proc.pid, 0)
    print(json.dumps(dict(seconds=time.perf_counter() - start, out=out,
                          cpu_s=use.ru_utime + use.ru_stime,
                          maxrss_mib=use.ru_maxrss / 1024,
                          code=os.waitstatus_to_exitcode(status))))


if __name__ == '__main__':
    main(sys.argv[1:])
