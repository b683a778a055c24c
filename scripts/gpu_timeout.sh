#!/bin/bash
# gpu_timeout.sh SECONDS CMD...: run CMD in its own session; past SECONDS, make every Python process of that
# session print all its threads' stacks (SIGUSR1, with the faulthandler hook below on PYTHONPATH), then kill the
# session. A hung multi-process vLLM run thus leaves where each process waited, and the caller goes on.
#   mkdir -p /tmp/fh && echo 'import faulthandler,signal;faulthandler.register(signal.SIGUSR1,all_threads=True)' \
#       > /tmp/fh/sitecustomize.py && export PYTHONPATH=/tmp/fh:$PYTHONPATH
limit=$1; shift
setsid "$@" &
pid=$!
for _ in $(seq "$limit"); do
  kill -0 "$pid" 2>/dev/null || { wait "$pid"; exit $?; }
  sleep 1
done
echo "gpu_timeout: $* still running after $limit s: dumping stacks, then killing" >&2
pkill -USR1 -s "$pid"; sleep 10; pkill -9 -s "$pid"
wait "$pid"
exit 124
