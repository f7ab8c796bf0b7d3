#!/bin/sh
# build-static.sh OUT [VERSION]: builds tcptrace as one static binary (no
# cgo, no libc), as the container image does (deploy/Dockerfile runs this
# very script), so that `make static` checks the image's build without a
# container engine.
set -eu
out="${1:?usage: build-static.sh OUT [VERSION]}"
version="${2:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
CGO_ENABLED=0 GOOS=linux go build -trimpath \
	-ldflags "-s -w -X github.com/tcptrace/tcptrace/internal/session.Version=$version" \
	-o "$out" ./cmd/tcptrace
