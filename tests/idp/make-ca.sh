#!/usr/bin/env bash
# Creates a throwaway test CA and a server certificate for the test IdP on loopback.
#
# Usage: tests/idp/make-ca.sh OUT_DIR
#
# Writes into OUT_DIR (created if missing):
#   ca.pem, ca-key.pem          the CA (P-256, CA:true, keyCertSign), valid 30 days
#   server.pem, server-key.pem  a server certificate for 127.0.0.1, ::1 and localhost (SAN),
#                               EKU serverAuth, signed by the CA, valid 30 days
#
# Tests run it into a fresh temporary directory each time, so nothing here is committed and
# nothing outlives a test run. EC keys: generating them takes milliseconds, RSA ones much longer.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
out=$1
mkdir -p "$out"
cd "$out"

days=30
# `openssl x509 -req` copies no extensions from the request, so the server's come from a file.
cat >extensions.cnf <<'EOF'
[server]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, IP:::1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out ca-key.pem
openssl req -new -x509 -key ca-key.pem -sha256 -days "$days" -subj "/CN=wasm-jwt-authn test CA" \
    -addext "basicConstraints=critical,CA:true,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.pem

openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out server-key.pem
openssl req -new -key server-key.pem -subj "/CN=127.0.0.1" -out server.csr
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -sha256 -days "$days" \
    -extfile extensions.cnf -extensions server -out server.pem 2>x509.log ||
    { cat x509.log >&2; exit 1; }
rm -f server.csr ca.srl extensions.cnf x509.log
chmod 600 ca-key.pem server-key.pem

openssl verify -CAfile ca.pem -purpose sslserver server.pem >/dev/null
