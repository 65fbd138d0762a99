#!/bin/sh
# gencerts.sh DIR [CLIENT...] — development certificates for server-tls.conf:
#   DIR/ca.pem, DIR/ca-key.pem           a certificate authority
#   DIR/server.pem, DIR/server-key.pem   the server's: localhost, 127.0.0.1, ::1 and $DF_TLS_HOSTS
#   DIR/<client>.pem, DIR/<client>-key.pem  one per CLIENT name, for mutual TLS
# Keys are written unencrypted, readable by their owner only. Keep DIR out of
# the repository; production certificates come from your own CA.
set -eu

dir=${1:?usage: gencerts.sh DIR [CLIENT...]}
shift
days=${DF_TLS_DAYS:-365}
mkdir -p "$dir"
umask 077

newkey() {
	openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null
}

sign() { # name extfile
	openssl req -new -key "$dir/$1-key.pem" -subj "/CN=$1" -out "$dir/$1.csr"
	openssl x509 -req -in "$dir/$1.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
		-days "$days" -extfile "$2" -out "$dir/$1.pem" 2>/dev/null
	rm -f "$dir/$1.csr" "$2"
}

newkey "$dir/ca-key.pem"
openssl req -x509 -new -key "$dir/ca-key.pem" -subj "/CN=DataFlare development CA" -days "$days" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$dir/ca.pem"

sans="DNS:localhost,IP:127.0.0.1,IP:::1"
for h in $(echo "${DF_TLS_HOSTS:-}" | tr ',' ' '); do
	sans="$sans,DNS:$h"
done
newkey "$dir/server-key.pem"
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n' "$sans" >"$dir/server.ext"
sign server "$dir/server.ext"

for name in "$@"; do
	newkey "$dir/$name-key.pem"
	printf 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n' >"$dir/$name.ext"
	sign "$name" "$dir/$name.ext"
done
rm -f "$dir/ca.srl"
for f in "$dir"/*.pem; do
	case $f in *-key.pem) ;; *) chmod 644 "$f" ;; esac
done
echo "wrote $dir: ca.pem, server.pem${*:+ and }$*"
