#!/bin/bash
# One run of the sendmmsg-batching comparison in docs/PERFORMANCE.md:
# a PCMU live channel to 2,000 UDP listeners with `--send-batch BATCH`
# (64: the default; 1: one system call per datagram), server on core 0,
# tester on core 1; prints the server's CPU over 12 s of steady state.
# usage: benches/batch_gain.sh BATCH PORT   (from the repository root,
# after cargo build --release; /tmp/long must exist)
set -u
B=$1; P=$2
cd "$(dirname "$0")/.."
mkdir -p /tmp/long
taskset -c 0 target/release/rtspd --bind 127.0.0.1 --port $P --rtp-port $((P+2)) --media /tmp/long --max-sessions-per-ip 20000 --max-connections-per-ip 20000 --send-batch $B --live ch=media/tones-8k-mono.wav,codec=pcmu > /dev/null 2>&1 &
sleep 1; PID=$(pgrep -f "port $P ")
taskset -c 1 target/release/rtspd load rtsp://127.0.0.1:$P/live/ch -n 2000 -d 25 --ramp 400 > /tmp/batch-$B-$P.out 2>&1 &
sleep 9; read a b < <(awk '{print $14, $15}' /proc/$PID/stat); t0=$(date +%s.%N); sleep 12; read c d < <(awk '{print $14, $15}' /proc/$PID/stat); t1=$(date +%s.%N)
python3 -c "print('batch $B server CPU %.1f%%' % (( ($c+$d)-($a+$b) )/100/($t1-$t0)*100))"
sleep 12; grep -E 'pacing|packets ' /tmp/batch-$B-$P.out | sed 's/^/  /'
kill $PID
