# Multi-stage build: a static groupcastd on a distroless base, running as non-root.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/groupcastd ./cmd/groupcastd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/groupcastd /usr/local/bin/groupcastd
USER 65532:65532
WORKDIR /var/lib/groupcast
ENV GROUPCAST_LISTEN=0.0.0.0:8080 GROUPCAST_DATA=/var/lib/groupcast
# 8080: HTTP (on a non-loopback address: --access keysets unless --access open is given);
# 8081: admin (keysets, /metrics, pprof) when started with --admin-listen 0.0.0.0:8081 --admin-token <secret>;
# 7946: gossip (UDP and TCP) when started with --gossip 0.0.0.0:7946 --advertise <host>:8080
EXPOSE 8080 8081 7946/tcp 7946/udp
ENTRYPOINT ["/usr/local/bin/groupcastd"]
