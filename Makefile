# groupcast — the two commands a newcomer needs: `make run` and `make test`.
.PHONY: run test vet infra-up infra-down build bench bench-quick bench-cluster bench-propagation bench-views

run:
	go run ./cmd/groupcastd

build:
	CGO_ENABLED=0 go build -trimpath -o bin/ ./cmd/...

# Starts real Cassandra and Redis (installing what is missing), vets, runs
# every test with the race detector against them, and stops the servers.
test:
	scripts/test

vet:
	go vet ./...

infra-up:
	scripts/infra up

infra-down:
	scripts/infra down

# The benchmark suite: propagation, tokens, groups, fanout against a hello-world
# ceiling and against Nchan; writes bench/results/<timestamp>/ (results.json,
# report.md, plots). Installs what it needs. bench-quick is the smoke version.
bench:
	scripts/bench

bench-quick:
	scripts/bench --quick

# The cluster scenario alone: memory per node with 1-3 nodes, one forward's
# latency, the failover gap after a kill -9.
bench-cluster:
	scripts/bench --only cluster

# Propagation A → B on real Cassandra and Redis: overlay on vs. the 1 s storage-polling baseline.
bench-propagation:
	scripts/bench-propagation

# View reads on a cache hit vs. a plain map read.
bench-views:
	go test -run XXX -bench 'ViewHit|MapRead' -benchtime 1s -count 6 -cpu 1,2 ./subscriber/
