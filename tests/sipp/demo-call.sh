#!/usr/bin/env bash
# Call the demo with SIPp: phone 1002 registers and answers (echoing RTP), the demo
# trunk (SIPp from 127.0.0.1, no authentication) calls 1002, talks 3 s, hangs up.
# Usage: tests/sipp/demo-call.sh [SWITCH_PORT]   (default 5060; the switch must run)
set -euo pipefail
port=${1:-5060}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'kill "$callee" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"

echo "1. phone 1002 registers from 127.0.0.1:5172"
timeout 15 sipp "127.0.0.1:$port" -sf "$here/phone-register-digest-accepted.xml" \
    -s 1002 -au 1002 -ap demo1002 -i 127.0.0.1 -p 5172 -m 1 -nostdin -timeout 10s \
    > register.out 2>&1

echo "2. phone 1002 waits for the call on the same port (answers after 0.5 s)"
timeout 40 sipp -sf "$here/callee-answers-waits-for-bye.xml" -i 127.0.0.1 -p 5172 \
    -mp 21200 -m 1 -nostdin -rtp_echo -key codec 0 -key codec_name PCMU \
    -set ring_ms 500 > callee.out 2>&1 &
callee=$!
sleep 0.5

echo "3. the demo trunk calls 1002"
timeout 40 sipp "127.0.0.1:$port" -sf "$here/trunk-call-answered-caller-hangs-up.xml" \
    -s 1002 -i 127.0.0.1 -p 5171 -mp 21100 -m 1 -d 3000 -nostdin -timeout 30s \
    > caller.out 2>&1 && echo "   call answered and hung up: OK" \
    || { echo "   call failed, see caller.out:"; tail -20 caller.out; exit 1; }
wait "$callee" && echo "   phone saw INVITE, ACK and BYE: OK"
