# syntax=docker/dockerfile:1
# connprobe image: one static binary (probe serve, probe responder, probe run).
#
# The build stage runs exactly `make build` (CGO_ENABLED=0, -trimpath) with
# TAGS=kubernetes (the Kubernetes client linked), whose output is bin/probe;
# the final stage is scratch with that file alone. A test
# (deploy/dockerfile_test.go) keeps this file and the Makefile in step.
#
#   docker build --build-arg VERSION=$(git describe --always) \
#     --build-arg REVISION=$(git rev-parse HEAD) -t connprobe .

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
RUN make build VERSION=${VERSION} REVISION=${REVISION} TAGS=kubernetes

FROM scratch
COPY --from=build /src/bin/probe /probe
# Non-root by default (the responder needs no capability). The agent
# DaemonSet runs as uid 0 with NET_RAW, NET_ADMIN and SYS_ADMIN only, because
# Kubernetes grants added capabilities to root alone (deploy/daemonset.yaml).
USER 65532:65532
ENTRYPOINT ["/probe"]
CMD ["--help"]
