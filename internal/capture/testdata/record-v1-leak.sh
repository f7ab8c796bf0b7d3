#!/bin/sh
# record-v1-leak.sh OUT.tcpcap: records the scenario of v1-leak.tcpcap (as
# root, in a network namespace of its own): a server leaking 24 CLOSE_WAIT
# sockets, a churn of 600 connections with the client closing first and
# one of 300 with the server closing first, traced for 6 s with
# --close-wait-threshold 2s. Run from the repository's root after
# `make build`. A new capture format version keeps the old file and adds
# one recorded by this script.
set -eu
out=$1
ns=tcptrace-rec-$$
ip netns add $ns
trap 'kill $leak 2>/dev/null || true; ip netns del $ns' EXIT
ip -n $ns link set lo up
ip netns exec $ns ./tcptrace -q -o json -w "$out" --close-wait-threshold 2s -d 6s >/dev/null &
trace=$!
sleep 1
ip netns exec $ns ./tcpchurn -n 24 -r 8 --close leak --hold 30s -o json >/dev/null &
leak=$!
sleep 0.3
ip netns exec $ns ./tcpchurn -n 600 -r 150 --close client -o json >/dev/null
ip netns exec $ns ./tcpchurn -n 300 -r 150 --close server -o json >/dev/null
wait $trace
