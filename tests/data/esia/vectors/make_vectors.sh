#!/bin/sh
# Regenerates the known-answer vectors with the openssl CLI only (independent of schoolgate's code).
# Private keys live in a private temp dir and are deleted: only certificates, data and signatures are kept.
# Usage: sh tests/data/esia/vectors/make_vectors.sh   (from the project root; needs libengine-gost-openssl)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); chmod 700 "$tmp"; trap 'rm -rf "$tmp"' EXIT
umask 077
# the v2 client_secret string: client_id + scope + timestamp + state + redirect_uri
printf '%s' 'SCHOOL-001openid fullname2026.12.04 10:00:00 +0000c0a8f5d2-1111-4222-8333-444455556666https://school.example/esia/cb' > "$tmp/message"
make() { # name engine-args keygen-args md jwt-alg
  name=$1; eng=$2; newkey=$3; md=$4
  mkdir -p "$here/$name"
  # shellcheck disable=SC2086
  openssl req $eng -x509 $newkey -nodes -keyout "$tmp/$name.key" -out "$here/$name/cert.pem" \
    -subj "/CN=schoolgate known-answer $name/O=School" -days 3650 2>/dev/null
  cp "$tmp/message" "$here/$name/message.txt"
  openssl dgst $eng "-$md" -sign "$tmp/$name.key" -out "$here/$name/raw.sig" "$tmp/message" 2>/dev/null
  openssl cms $eng -sign -binary -noattr -outform DER -md "$md" \
    -signer "$here/$name/cert.pem" -inkey "$tmp/$name.key" -in "$tmp/message" -out "$here/$name/cms-noattr.p7s" 2>/dev/null
  openssl cms $eng -sign -binary -outform DER -md "$md" \
    -signer "$here/$name/cert.pem" -inkey "$tmp/$name.key" -in "$tmp/message" -out "$here/$name/cms-attr.p7s" 2>/dev/null
  # a JWT signed by the openssl CLI: base64url(header).base64url(claims).base64url(raw signature)
  alg=$5
  b64u() { basenc --base64url -w0 | tr -d '='; }
  head=$(printf '{"alg":"%s","typ":"JWT"}' "$alg" | b64u)
  body=$(printf '%s' '{"nbf":1798761600,"iat":1798761600,"exp":1798765200,"iss":"http://esia-portal1.test.gosuslugi.ru/","client_id":"SCHOOL-001","scope":"openid","urn:esia:sbj_id":"1000299654"}' | b64u)
  printf '%s.%s' "$head" "$body" > "$tmp/jwt-input"
  sig=$(openssl dgst $eng "-$md" -sign "$tmp/$name.key" "$tmp/jwt-input" 2>/dev/null | b64u)
  printf '%s.%s\n' "$(cat "$tmp/jwt-input")" "$sig" > "$here/$name/token.jwt"
  openssl x509 -in "$here/$name/cert.pem" -outform der | openssl dgst -engine gost -md_gost12_256 2>/dev/null \
    | sed 's/.*= //' > "$here/$name/cert_hash_gost12_256.txt"
}
make gost2012-256 "-engine gost" "-newkey gost2012_256 -pkeyopt paramset:A" md_gost12_256 GOST3410_2012_256
make gost2012-512 "-engine gost" "-newkey gost2012_512 -pkeyopt paramset:A" md_gost12_512 GOST3410_2012_512
make rsa2048 "" "-newkey rsa:2048" sha256 RS256
make ecdsa-p256 "" "-newkey ec -pkeyopt ec_paramgen_curve:P-256" sha256 ES256-DER-not-JWT
# CryptoPro order: the same GOST signature byte-reversed
python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); open(sys.argv[2],"wb").write(d[::-1])' \
  "$here/gost2012-256/raw.sig" "$here/gost2012-256/raw-cryptopro-order.sig"
echo "vectors written to $here"
