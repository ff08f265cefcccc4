#!/usr/bin/env bash
# ssh login with a key on a tpmvsc card, against a private sshd on 127.0.0.1 (its own
# config, host key and authorized_keys in a temp dir; the system's sshd is not touched):
#   1. `ssh-keygen -D` prints the card's public keys (readable without the PIN);
#   2. `ssh -I libtpmvsc.so` logs in with the card key (PIN through SSH_ASKPASS);
#   3. `ssh-agent` + `ssh-add -s libtpmvsc.so`, then a plain `ssh` logs in through the agent.
#
#   eval "$(tpmvsc simulator env)"             # or a real TPM
#   CARD=work bash examples/ssh-login.sh
#
# Environment: CARD (required); KEY (the key's label, default "ssh"; generated when the card
# has no such key); KEY_TYPE (for that: ec-p256 (default), ec-p384, rsa2048, rsa3072);
# PIN_FILE (the PIN on its first line; default: the default PIN 12345678); TPMVSC_MODULE
# (default: the installed module); PORT (default 2222); WORKDIR (default: a new temp dir).
# To log in to a real host: put the `ssh-keygen -D` line into its ~/.ssh/authorized_keys
# and run `ssh -I "$TPMVSC_MODULE" user@host`.
set -euo pipefail

: "${CARD:?set CARD to the card name}"
KEY=${KEY:-ssh}
KEY_TYPE=${KEY_TYPE:-ec-p256}
PORT=${PORT:-2222}
MODULE=${TPMVSC_MODULE:-/usr/lib/x86_64-linux-gnu/pkcs11/libtpmvsc.so}
export TSS2_LOG=${TSS2_LOG:-all+NONE}   # libtss2 would print every failed TPM command
WORKDIR=${WORKDIR:-$(mktemp -d)}
cd "$WORKDIR"
if [ -z "${PIN_FILE:-}" ]; then
    PIN_FILE=$WORKDIR/pin
    echo 12345678 > "$PIN_FILE"
fi
USER_NAME=$(id -un)
unset SSH_AUTH_SOCK SSH_AGENT_PID   # step 2 uses the module only; step 3 starts its own agent

# (Not `tpmvsc keys | grep -q`: with pipefail, grep exiting early would fail the pipe.)
if ! grep -q "\"label\": \"$KEY\"" <<< "$(tpmvsc keys "$CARD" --json)"; then
    tpmvsc keygen "$CARD" --type "$KEY_TYPE" --label "$KEY" --pin-file "$PIN_FILE"
fi

echo "== 1. the card's public keys (the comment is the key's label)"
ssh-keygen -D "$MODULE" | tee card-keys.pub
grep " $KEY\$" card-keys.pub > authorized_keys

# ssh asks for the PIN through SSH_ASKPASS; this one prints the PIN file.
printf '#!/bin/sh\nhead -n1 %q\n' "$PIN_FILE" > askpass.sh
chmod 700 askpass.sh
export SSH_ASKPASS=$WORKDIR/askpass.sh SSH_ASKPASS_REQUIRE=force DISPLAY=${DISPLAY:-:0}

# A private sshd: only this temp dir's host key and authorized_keys, 127.0.0.1 only.
ssh-keygen -q -t ed25519 -N '' -f host_key
cat > sshd_config <<EOF
ListenAddress 127.0.0.1
Port $PORT
HostKey $WORKDIR/host_key
PidFile $WORKDIR/sshd.pid
AuthorizedKeysFile $WORKDIR/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
EOF
[ "$(id -u)" != 0 ] || mkdir -p -m 0755 /run/sshd   # sshd's privilege separation dir
: > sshd.log                    # exists before the loop below reads it
"$(command -v sshd || echo /usr/sbin/sshd)" -f "$WORKDIR/sshd_config" -D -e 2> sshd.log &
SSHD_PID=$!
AGENT_PID=
cleanup() {
    kill "$SSHD_PID" 2>/dev/null || true
    [ -z "$AGENT_PID" ] || kill "$AGENT_PID" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 200); do
    grep -q 'Server listening' sshd.log && break
    kill -0 "$SSHD_PID" 2>/dev/null || { cat sshd.log; exit 1; }
    sleep 0.1
done
grep -q 'Server listening' sshd.log || { echo "sshd did not start"; cat sshd.log; exit 1; }

# Not BatchMode=yes: it stops ssh from asking for the PIN at all ("pin required").
SSH_OPTS=(-F /dev/null -p "$PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
          -o PreferredAuthentications=publickey -o ConnectTimeout=20 -o LogLevel=ERROR)

echo "== 2. ssh -I: the card key logs in"
timeout 120 ssh "${SSH_OPTS[@]}" -I "$MODULE" "$USER_NAME@127.0.0.1" echo "login with card key $KEY ok" < /dev/null

echo "== 3. ssh-agent + ssh-add -s: the agent holds the card key"
# -P: the agent loads PKCS#11 modules only from its allow-list (system library dirs)
# unless told otherwise; allow exactly this module.
eval "$(ssh-agent -s -P "$MODULE")" > /dev/null
AGENT_PID=$SSH_AGENT_PID
timeout 120 ssh-add -s "$MODULE" < /dev/null
ssh-add -L | tee agent-keys.pub
grep -qF "$(cut -d' ' -f1,2 authorized_keys)" agent-keys.pub
timeout 120 ssh "${SSH_OPTS[@]}" -o IdentitiesOnly=no "$USER_NAME@127.0.0.1" echo "login through ssh-agent ok" < /dev/null
